"""The support bot instrumented with OpenLLMetry (Traceloop's ``opentelemetry-instrumentation-openai``).

OpenLLMetry captures content by default (``TRACELOOP_TRACE_CONTENT=true``); otel-judge reads both
its current attributes and the indexed ``gen_ai.prompt.N.*`` ones of older releases.

    python examples/run.py openllmetry
    python examples/openllmetry_app.py "QUESTION"  # against otel-judge on 127.0.0.1:4317 and OPENAI_API_KEY
"""

from __future__ import annotations

import os
import sys

from opentelemetry.sdk.trace import TracerProvider
from support_bot import main


def instrument(provider: TracerProvider) -> None:
    os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")  # the default; "false" would hide the content
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")  # no usage telemetry to Traceloop
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    sys.exit(main("support-bot-openllmetry", instrument))
