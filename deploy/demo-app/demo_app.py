"""The demo stack's example app: a support bot and a search assistant that emit GenAI spans.

No model is called: each conversation is written as the spans an instrumented web app calling an
LLM would produce (the app's HTTP server span and its ``chat <model>`` child, current GenAI semantic
conventions, content capture on), with the OpenTelemetry SDK over OTLP/gRPC. The conversations vary
by route, model and prompt version, and prompt v2 of the search route answers evasively now and
then, so otel-judge's scores (from the fake judge, deploy/fake-judge/) differ by slice and the
dashboards, alerts and trace queries have something to show:

    route            models                          prompt versions
    /support/chat    gpt-4o-mini, claude-sonnet-4    v1
    /search/answer   gpt-4o-mini, claude-sonnet-4    v1, v2 (v2: evasive answers half of the time)

The judge of the demo is an OpenAI-family model, so spans of gpt-4o-mini are marked
``otel_judge.evaluation.same_family=true``.

    python deploy/demo-app/demo_app.py [--count N] [--interval SECONDS]

sends to OTEL_EXPORTER_OTLP_ENDPOINT (default http://127.0.0.1:4317); --count 0 runs until stopped.
Needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-grpc (deploy/demo-app/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Tracer, set_span_in_context

DEFAULT_ENDPOINT = "http://127.0.0.1:4317"


@dataclass(frozen=True)
class Turn:
    route: str
    question: str
    answer: str
    evasive: str  # what prompt v2 of the search route says instead, now and then


TURNS = (
    Turn(
        "/support/chat",
        "My tent pole arrived cracked. Can I get just a replacement pole?",
        "Sorry about that! Replacement poles for damage on arrival are free: I have ordered one to your address, "
        "it arrives in 3-5 working days.",
        "I'm not sure what our policy is on that.",
    ),
    Turn(
        "/support/chat",
        "How do I return hiking boots that are too small?",
        "Print the prepaid label from your order page, pack the boots in their box and drop them at any post "
        "office within 30 days; the refund follows within 5 days of arrival.",
        "I don't know, please check the website.",
    ),
    Turn(
        "/support/chat",
        "My order hasn't arrived after two weeks.",
        "I'm sorry for the wait. I have passed your order to our support team, who will contact you today with "
        "the courier's tracking details.",
        "I cannot help with deliveries.",
    ),
    Turn(
        "/search/answer",
        "Which sleeping bag is warm enough for -10 °C?",
        "The Polar 900 is rated to -12 °C comfort; the Summit 700 to -8 °C, so choose the Polar 900 for -10 °C.",
        "I'm not sure, there are many sleeping bags.",
    ),
    Turn(
        "/search/answer",
        "Do you sell waterproof trail running shoes?",
        "Yes: the Ridge GTX and the Torrent Trail both have a waterproof membrane; the Torrent is lighter.",
        "I don't know which shoes are waterproof.",
    ),
)
MODELS = (("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic"))


def emit_conversation(tracer: Tracer, rng: random.Random) -> str:
    """Write one conversation's two spans; return its trace id (hex)."""
    turn = rng.choice(TURNS)
    model, provider = rng.choice(MODELS)
    version = rng.choice(("v1", "v2")) if turn.route == "/search/answer" else "v1"
    answer = turn.evasive if version == "v2" and rng.random() < 0.5 else turn.answer
    start = time.time_ns()
    llm_start, llm_end = start + 5_000_000, start + rng.randint(400, 2500) * 1_000_000
    root = tracer.start_span(
        f"POST {turn.route}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.request.method": "POST", "http.route": turn.route, "http.response.status_code": 200},
    )
    llm = tracer.start_span(
        f"chat {model}",
        context=set_span_in_context(root),
        kind=SpanKind.CLIENT,
        start_time=llm_start,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.prompt.version": version,
            "gen_ai.usage.input_tokens": 40 + len(turn.question) // 4,
            "gen_ai.usage.output_tokens": 10 + len(answer) // 4,
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": turn.question}]}]
            ),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
            ),
        },
    )
    llm.end(end_time=llm_end)
    root.end(end_time=llm_end + 3_000_000)
    return format(root.get_span_context().trace_id, "032x")


def run(endpoint: str, count: int, interval: float, stop: threading.Event | None = None, seed: int = 7) -> list[str]:
    """Send ``count`` conversations (0: until ``stop`` is set), ``interval`` seconds apart; flush; return
    their trace ids."""
    stop = stop or threading.Event()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "northwind-assistant", "deployment.environment.name": "demo"})
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    tracer = provider.get_tracer("otel_judge.demo_app", "1.0.0")
    rng = random.Random(seed)
    trace_ids: list[str] = []
    try:
        while not stop.is_set() and (count == 0 or len(trace_ids) < count):
            trace_ids.append(emit_conversation(tracer, rng))
            if interval:
                stop.wait(interval)
    finally:
        provider.shutdown()  # flushes what is batched
    return trace_ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=0, help="conversations to send; 0 = until SIGTERM/SIGINT")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between conversations")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    sent = run(endpoint, args.count, args.interval, stop)
    print(f"demo app: sent {len(sent)} conversations to {endpoint}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
