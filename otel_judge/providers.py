"""Judge providers with an OpenAI-compatible chat API, and judge model prices, without litellm.

``import litellm`` costs seconds and ~190 MiB, and each ``litellm.acompletion`` 4-6 ms of CPU. For the
providers listed in :data:`PROVIDERS` (the common ones: OpenAI, Azure OpenAI, vLLM, Ollama,
llama.cpp/llamafile, LM Studio, Groq, Together, DeepSeek, Mistral, Fireworks, OpenRouter, ...)
otel-judge resolves once per judge model what litellm would resolve on every call (provider, model
name on the wire, URL, credentials, price, structured-output support) and posts the request itself
(:class:`otel_judge.judge.OpenAICompatibleJudge`). Resolution follows litellm's own rules (base URLs,
environment variables, the model string prefix); ``tests/test_judge_fastpath.py`` checks this table
against litellm.

Prices come from the price list bundled with the installed litellm
(``model_prices_and_context_window_backup.json``), the very data litellm prices calls with, read
without importing litellm. Nothing here touches the network.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "PROVIDERS",
    "ModelInfo",
    "ModelPrices",
    "OpenAIRoute",
    "Provider",
    "load_prices",
    "openai_compatible",
    "request_params",
    "resolve_route",
    "supports_schema",
    "system_as_user",
]


@dataclass(frozen=True, slots=True)
class Provider:
    """How litellm reaches one OpenAI-compatible provider.

    ``base_env`` / ``key_env``: the environment variables litellm reads, in its order;
    ``default_base``: its default base URL (None: ``api_base`` is required); ``default_key``: the key
    litellm sends when none is configured (None: no ``Authorization`` header); ``path``: appended to
    the base URL; ``needs_api_base``: route only when an ``api_base`` is configured (else litellm).
    """

    default_base: str | None
    base_env: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    default_key: str | None = None
    path: str = "/chat/completions"
    needs_api_base: bool = False
    headers: tuple[tuple[str, str, str], ...] = ()  # (header, environment variable, default)


_OLLAMA: Final = "/v1/chat/completions"

#: model-string prefix -> provider. A prefix not listed here goes through litellm.
PROVIDERS: Final[Mapping[str, Provider]] = {
    "openai": Provider("https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE"), ("OPENAI_API_KEY",)),
    "azure": Provider(None, ("AZURE_API_BASE",), ("AZURE_OPENAI_API_KEY", "AZURE_API_KEY")),
    "hosted_vllm": Provider(None, ("HOSTED_VLLM_API_BASE",), ("HOSTED_VLLM_API_KEY",), default_key="fake-api-key"),
    # litellm's ``vllm/`` runs the vllm library in-process; with an api_base it is a vLLM server.
    "vllm": Provider(None, (), ("HOSTED_VLLM_API_KEY",), default_key="fake-api-key", needs_api_base=True),
    # Ollama through its OpenAI-compatible API (litellm uses the native /api/chat).
    "ollama_chat": Provider(
        "http://localhost:11434", ("OLLAMA_API_BASE",), ("OLLAMA_API_KEY",), path="/v1/chat/completions"
    ),
    "ollama": Provider(
        "http://localhost:11434", ("OLLAMA_API_BASE",), ("OLLAMA_API_KEY",), path="/v1/chat/completions"
    ),
    "lm_studio": Provider(None, ("LM_STUDIO_API_BASE",), ("LM_STUDIO_API_KEY",), default_key="fake-api-key"),
    "llamafile": Provider(
        "http://127.0.0.1:8080/v1", ("LLAMAFILE_API_BASE",), ("LLAMAFILE_API_KEY",), default_key="fake-api-key"
    ),
    "groq": Provider("https://api.groq.com/openai/v1", ("GROQ_API_BASE",), ("GROQ_API_KEY",)),
    "together_ai": Provider(
        "https://api.together.ai/v1",
        ("TOGETHER_AI_API_BASE",),
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
    ),
    "deepseek": Provider("https://api.deepseek.com/beta", ("DEEPSEEK_API_BASE",), ("DEEPSEEK_API_KEY",)),
    "mistral": Provider(
        "https://api.mistral.ai/v1", ("MISTRAL_AZURE_API_BASE",), ("MISTRAL_AZURE_API_KEY", "MISTRAL_API_KEY")
    ),
    "fireworks_ai": Provider(
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_BASE",),
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
    ),
    "openrouter": Provider(
        "https://openrouter.ai/api/v1",
        ("OPENROUTER_API_BASE",),
        ("OPENROUTER_API_KEY", "OR_API_KEY"),
        headers=(("HTTP-Referer", "OR_SITE_URL", "https://litellm.ai"), ("X-Title", "OR_APP_NAME", "liteLLM")),
    ),
    "xai": Provider("https://api.x.ai/v1", ("XAI_API_BASE",), ("XAI_API_KEY",)),
    "deepinfra": Provider("https://api.deepinfra.com/v1/openai", ("DEEPINFRA_API_BASE",), ("DEEPINFRA_API_KEY",)),
    "perplexity": Provider(
        "https://api.perplexity.ai", ("PERPLEXITY_API_BASE",), ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY")
    ),
    "cerebras": Provider("https://api.cerebras.ai/v1", ("CEREBRAS_API_BASE",), ("CEREBRAS_API_KEY",)),
    "nvidia_nim": Provider("https://integrate.api.nvidia.com/v1", ("NVIDIA_NIM_API_BASE",), ("NVIDIA_NIM_API_KEY",)),
    "sambanova": Provider("https://api.sambanova.ai/v1", ("SAMBANOVA_API_BASE",), ("SAMBANOVA_API_KEY",)),
}

#: litellm sends structured output to these providers for every model (``supports_response_schema``).
_SCHEMA_EVERYWHERE: Final = frozenset({"fireworks_ai", "lm_studio"})

AZURE_DEFAULT_API_VERSION: Final = "2025-02-01-preview"  # litellm 1.103's default


def _split(model: str) -> tuple[str, str]:
    """``provider/name`` -> (provider, name). A bare name is litellm's shorthand for an OpenAI model
    only when the price list says so; the caller checks that."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else ("", model)


def openai_compatible(model: str) -> bool:
    """Whether ``model``'s provider prefix is one otel-judge can call without litellm (a bare name
    counts: it is an OpenAI model when the price list knows it, see :func:`resolve_route`)."""
    provider, _ = _split(model)
    return provider in PROVIDERS or provider == ""


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


Reasoning = Literal["o-series", "gpt-5"] | None


def _reasoning(provider: str, name: str) -> Reasoning:
    """OpenAI's reasoning models, by litellm's name rules: o1/o3/o4... and gpt-5/gpt-6 (not
    gpt-5-chat). Their parameters differ (see :meth:`ModelInfo.request_params`)."""
    if provider not in ("openai", "azure"):
        return None
    base = name.rsplit("/", maxsplit=1)[-1].lower()
    if len(base) > 1 and base[0] == "o" and base[1].isdigit():
        return "o-series"
    if ("gpt-5" in base or "gpt-6" in base) and not base.startswith("gpt-5-chat"):
        return "gpt-5"
    return None


# --------------------------------------------------------------------------- prices


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model's entry in litellm's price list: USD per token (None: not priced) and whether it
    takes structured output. ``tiers``: (above N prompt tokens, input price, output price), highest
    threshold first."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    tiers: tuple[tuple[int, float | None, float | None], ...] = ()
    supports_schema: bool = False
    system_messages: bool = False  # o-series: system messages accepted (else sent as user messages)
    default_effort_none: bool = False  # gpt-5: reasoning off by default, so sampling parameters allowed

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float | None:
        """The cost of one call as litellm's generic token pricing computes it (a tier's prices apply
        to the whole call above its threshold; cached prompt tokens at the cache-read price)."""
        if self.input is None or self.output is None:
            return None
        input_price, output_price = self.input, self.output
        for threshold, tier_in, tier_out in self.tiers:
            if input_tokens > threshold:
                input_price = tier_in if tier_in is not None else input_price
                output_price = tier_out if tier_out is not None else output_price
                break
        cached = min(cached_tokens, input_tokens) if self.cache_read is not None else 0
        cache_price = self.cache_read if self.cache_read is not None else 0.0
        return (input_tokens - cached) * input_price + cached * cache_price + output_tokens * output_price


_TIER = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _info(entry: Mapping[str, Any], provider: str) -> ModelInfo:
    tiers = []
    for key, value in entry.items():
        match = _TIER.match(key)
        if match and _number(value) is not None:
            above = match.group(1)
            tiers.append(
                (int(above) * 1000, _number(value), _number(entry.get(f"output_cost_per_token_above_{above}k_tokens")))
            )
    input_price, cache_read = (
        _number(entry.get("input_cost_per_token")),
        _number(entry.get("cache_read_input_token_cost")),
    )
    if provider == "fireworks_ai" and cache_read is None and input_price is not None:
        cache_read = input_price * 0.5  # litellm's FIREWORKS_AI_DEFAULT_CACHE_READ_RATE_RATIO
    return ModelInfo(
        input_price,
        _number(entry.get("output_cost_per_token")),
        cache_read,
        tuple(sorted(tiers, key=lambda tier: tier[0], reverse=True)),
        bool(entry.get("supports_response_schema")),
        entry.get("supports_system_messages") is True,
        entry.get("default_reasoning_effort") == "none",
    )


def price_list_path() -> Path | None:
    """litellm's bundled price list, found without importing litellm (None when not installed)."""
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class ModelPrices:
    """The price-list entries of one provider, keyed as in litellm's list."""

    provider: str
    entries: Mapping[str, ModelInfo] = field(default_factory=dict)

    def get(self, name: str) -> ModelInfo | None:
        """The price of ``name`` (a model name as sent or as answered), looked up as litellm does:
        ``provider/name``, then ``name``."""
        return self.entries.get(f"{self.provider}/{name}") or self.entries.get(name)


@functools.cache
def load_prices(provider: str) -> ModelPrices:
    """Parse litellm's price list once (~70 ms, in a worker thread at judge start-up) and keep only
    ``provider``'s entries (``ollama_chat`` is priced as ``ollama``, as litellm does)."""
    path = price_list_path()
    if path is None:
        return ModelPrices(provider)
    listed = "ollama" if provider == "ollama_chat" else provider
    with path.open("rb") as handle:
        data: dict[str, Any] = json.load(handle)
    entries: dict[str, ModelInfo] = {}
    for key, entry in data.items():
        if isinstance(entry, dict) and entry.get("litellm_provider") == listed:
            entries[key.replace(f"{listed}/", f"{provider}/", 1) if listed != provider else key] = _info(entry, listed)
    return ModelPrices(provider, entries)


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class OpenAIRoute:
    """Everything a judge call needs, resolved once per judge model."""

    provider: str
    model: str  # the model name in the request body
    url: str
    headers: Mapping[str, str]
    reasoning: Reasoning = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)  # sent with every request


def resolve_route(
    model: str, api_base: str | None, api_key: str | None, environ: Mapping[str, str] | None = None
) -> OpenAIRoute | None:
    """How to reach ``model`` without litellm, or None when it must go through litellm (a provider
    without an OpenAI-compatible API, or one whose set-up otel-judge does not replicate: Azure without
    an API key, i.e. Entra ID tokens; a server without a base URL)."""
    env = os.environ if environ is None else environ
    provider, name = _split(model)
    if provider == "" or provider not in PROVIDERS:
        # litellm treats a bare OpenAI model name ("gpt-4o-mini") as openai/<name>.
        if provider != "" or load_prices("openai").get(model) is None:
            return None
        provider, name = "openai", model
    spec = PROVIDERS[provider]
    if spec.needs_api_base and not api_base:
        return None
    base = api_base or _first(env, spec.base_env) or spec.default_base
    key = api_key or _first(env, spec.key_env) or spec.default_key
    if not base or not name:
        return None
    base = base.rstrip("/")
    headers = {"Content-Type": "application/json"}
    if provider == "azure":
        if key is None:
            return None
        version = env.get("AZURE_API_VERSION") or AZURE_DEFAULT_API_VERSION
        url = f"{base}/openai/deployments/{name}/chat/completions?api-version={version}"
        headers["api-key"] = key
    else:
        if provider == "mistral" and not base.endswith("/v1"):
            base += "/v1"  # litellm adds it: Mistral always needs /v1
        url = base if base.endswith(spec.path) else base + spec.path
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
    for header, variable, default in spec.headers:
        headers[header] = env.get(variable) or default
    extra: dict[str, Any] = {"usage": {"include": True}} if provider == "openrouter" else {}  # its cost, as litellm
    return OpenAIRoute(provider, name, url, headers, _reasoning(provider, name), extra)


def request_params(
    route: OpenAIRoute, info: ModelInfo | None, temperature: float, max_tokens: int, top_p: float | None
) -> dict[str, Any]:
    """The judge parameters as litellm sends them with ``drop_params``: reasoning models take
    ``max_completion_tokens``; o-series models and gpt-5 models that reason by default accept neither
    ``top_p`` nor a temperature other than 1, so those are left out."""
    params: dict[str, Any] = dict(route.extra_body)
    sampling = route.reasoning is None or (route.reasoning == "gpt-5" and info is not None and info.default_effort_none)
    params["max_completion_tokens" if route.reasoning else "max_tokens"] = max_tokens
    if sampling or temperature == 1:
        params["temperature"] = temperature
    if sampling and top_p is not None:
        params["top_p"] = top_p
    return params


def system_as_user(route: OpenAIRoute, info: ModelInfo | None) -> bool:
    """o-series models without system-message support get system messages as user messages."""
    return route.reasoning == "o-series" and not (info is not None and info.system_messages)


def supports_schema(route: OpenAIRoute, prices: ModelPrices) -> bool:
    """Whether litellm would send structured output (``response_format`` with a JSON schema)."""
    if route.provider in _SCHEMA_EVERYWHERE:
        return True
    info = prices.get(route.model)
    return info is not None and info.supports_schema
