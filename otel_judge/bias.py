"""Judge-bias guards: model families, for preference leakage (a judge favouring its own family)."""

from __future__ import annotations

import re
from typing import Final

# Family by model name; checked in order (the first match wins). Provider names are only a fallback:
# an OpenAI-compatible provider often serves other families' models.
_FAMILIES: Final = (
    ("anthropic", re.compile(r"claude")),
    ("google", re.compile(r"gemini|gemma|palm|bison|learnlm")),
    ("meta", re.compile(r"llama")),
    ("mistral", re.compile(r"mistral|mixtral|codestral|ministral|pixtral|magistral|devstral")),
    ("alibaba", re.compile(r"qwen|qwq")),
    ("deepseek", re.compile(r"deepseek")),
    ("cohere", re.compile(r"command|aya")),
    ("xai", re.compile(r"grok")),
    ("microsoft", re.compile(r"(^|[/_-])phi-?\d")),
    ("amazon", re.compile(r"nova|titan")),
    ("openai", re.compile(r"(^|[/_-])(gpt|o1|o3|o4|chatgpt|davinci|babbage|text-embedding)")),
)
_PROVIDERS: Final = {
    "openai": "openai",
    "azure": "openai",
    "azure.ai.openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "xai": "xai",
    "groq": None,
    "together": None,
    "aws.bedrock": None,
    "bedrock": None,
}


def model_family(model: str | None, provider: str | None = None) -> str | None:
    """The family of a model (``openai``, ``anthropic``, ``google``, ``meta``...), or None if unknown."""
    if model:
        name = model.lower()
        for family, pattern in _FAMILIES:
            if pattern.search(name):
                return family
    if provider:
        return _PROVIDERS.get(provider.lower().split("/")[0])
    return None


def same_family(judge_model: str | None, judged_model: str | None, judged_provider: str | None = None) -> bool:
    judge = model_family(judge_model)
    return judge is not None and judge == model_family(judged_model, judged_provider)
