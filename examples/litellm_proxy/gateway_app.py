"""The LiteLLM gateway example without the proxy server: ``config.yaml`` run through ``litellm.Router``.

The LiteLLM proxy routes each request with a ``litellm.Router`` built from ``model_list`` and logs it
with the callbacks of ``litellm_settings``; the proxy server itself needs ``litellm[proxy]`` (FastAPI,
uvicorn, websockets, ...), which otel-judge's environment does not install. This script does what
the proxy does with the same file: it applies ``environment_variables`` (the process environment
wins, so the demo can point the callback elsewhere), sets the ``otel`` callback and asks the
Router one question, so the spans otel-judge receives are the ones LiteLLM's otel callback writes.

    python examples/run.py litellm_gateway     # fake LLM, fake judge, otel-judge in-process
    python examples/litellm_proxy/gateway_app.py "QUESTION"   # real: otel-judge on :4317, OPENAI_API_KEY
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parent / "config.yaml"
SYSTEM_PROMPT = (
    "You are the support assistant of Northwind Outdoor. Answer briefly and accurately; "
    "if you do not know, say so and offer a human agent."
)
DEFAULT_QUESTION = "One pole of my Ridge 2 tent arrived cracked. Can I get just a replacement pole?"


def load(path: Path = CONFIG) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: a mapping is expected")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one request through the LiteLLM gateway config")
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument("--model", default="gpt-4o-mini", help="a model_name of config.yaml")
    args = parser.parse_args(argv)
    config = load()
    for key, value in (config.get("environment_variables") or {}).items():
        os.environ.setdefault(key, str(value))
    # The demo (and OTel's usual variable) can override where the callback exports.
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        os.environ["OTEL_ENDPOINT"] = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    import litellm

    litellm.telemetry = False
    settings = config.get("litellm_settings") or {}
    litellm.callbacks = list(settings.get("callbacks") or [])
    litellm.turn_off_message_logging = bool(settings.get("turn_off_message_logging", False))
    model_list = config["model_list"]
    if os.environ.get("OPENAI_BASE_URL"):  # the demo's fake LLM; the proxy would read api_base from the YAML
        model_list = [
            {**m, "litellm_params": {**m["litellm_params"], "api_base": os.environ["OPENAI_BASE_URL"]}}
            for m in model_list
        ]
    router = litellm.Router(model_list=model_list, num_retries=0)
    reply = router.completion(
        model=args.model,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": args.question}],
    )
    print(reply.choices[0].message.content)
    flush_otel_callback()
    return 0


def flush_otel_callback() -> None:
    """LiteLLM's otel callback exports from a batch processor of its own tracer provider: flush it
    before the process exits (the proxy, a long-running server, never needs this)."""
    import litellm
    from opentelemetry import trace

    for callback in [*litellm.callbacks, *litellm.success_callback, *litellm._async_success_callback]:
        provider = getattr(callback, "_tracer_provider", None) or getattr(callback, "tracer_provider", None)
        if provider is not None and hasattr(provider, "force_flush"):
            provider.force_flush()
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()


if __name__ == "__main__":
    sys.exit(main())
