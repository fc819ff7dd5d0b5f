"""The support bot instrumented with OpenInference (Arize's ``openinference-instrumentation-openai``).

OpenInference writes ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*`` and
captures content by default; leave ``OPENINFERENCE_HIDE_INPUTS`` / ``OPENINFERENCE_HIDE_OUTPUTS``
unset, or the judge has nothing to read.

    python examples/run.py openinference
    python examples/openinference_app.py "QUESTION"  # against otel-judge on 127.0.0.1:4317 and OPENAI_API_KEY
"""

from __future__ import annotations

import sys

from opentelemetry.sdk.trace import TracerProvider
from support_bot import main


def instrument(provider: TracerProvider) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


if __name__ == "__main__":
    sys.exit(main("support-bot-openinference", instrument))
