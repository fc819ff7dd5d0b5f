"""The support bot instrumented with the official OpenTelemetry OpenAI instrumentation
(``opentelemetry-instrumentation-openai-v2``), which writes the current GenAI semantic conventions.

Content capture is off by default in this library; without it a span arrives at otel-judge as
``otel_judge.evaluation.status=no_content``. ``SPAN_ONLY`` puts the messages on the span as
``gen_ai.input.messages`` / ``gen_ai.output.messages``.

    python examples/run.py openai_v2          # everything local: fake LLM, fake judge, otel-judge in-process
    python examples/openai_v2_app.py "QUESTION"  # against otel-judge on 127.0.0.1:4317 and OPENAI_API_KEY
"""

from __future__ import annotations

import os
import sys

from opentelemetry.sdk.trace import TracerProvider
from support_bot import main


def instrument(provider: TracerProvider) -> None:
    # Must be set before the instrumentor is created (util-genai reads it once).
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    sys.exit(main("support-bot-openai-v2", instrument))
