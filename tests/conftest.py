"""Shared fixtures: a span sink, a fake judge, an in-process pipeline, the real OTel SDK as client."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_judge.component import Settings
from otel_judge.config import Config, validate_config
from otel_judge.pipeline import Pipeline
from otel_judge.testing import FakeJudge, SpanSink

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
async def sink() -> AsyncIterator[SpanSink]:
    async with SpanSink() as s:
        yield s


@pytest.fixture
async def fake_judge() -> AsyncIterator[FakeJudge]:
    async with FakeJudge() as j:
        yield j


def pipeline_config(sink: SpanSink, fake: FakeJudge | None, **sections: Any) -> Config:
    """A config receiving on an ephemeral port, exporting to ``sink``, judging with ``fake``.

    ``sections`` are merged over the defaults, one level deep (``judge={"timeout": "1s"}``).
    """
    data: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "50ms"},
            }
        },
        "sampling": {
            "policies": [{"name": "all", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}],
            "decision_wait": "0s",
            "decision_wait_after_root_received": "0s",
        },
        "judge": {"timeout": "5s", "max_hold": "30s", "max_concurrency": 8},
        # Off unless a test is about it: the periodic and final metrics exports would add requests
        # to the sink that tests counting requests do not expect (tests/test_outputs.py turns it on).
        "outputs": {"metrics": {"otlp": False}},
    }
    if fake is not None:
        data["judge"].update({"model": fake.model, "api_base": fake.api_base, "api_key": "sk-test"})
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_config(data)


@asynccontextmanager
async def running(
    config: Config, settings: Settings | None = None, tick: float | None = 0.05
) -> AsyncIterator[Pipeline]:
    pipeline = Pipeline(config, settings or Settings())
    await pipeline.start(tick_interval=tick)
    try:
        yield pipeline
    finally:
        await pipeline.shutdown(5)


class SdkClient:
    """The real OpenTelemetry SDK exporting over OTLP/gRPC to one or more endpoints."""

    def __init__(self, endpoints: list[str], service: str = "shop-assistant") -> None:
        self.resource = Resource.create({"service.name": service, "deployment.environment": "test"})
        self.provider = TracerProvider(resource=self.resource)
        for endpoint in endpoints:
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
            self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
        self.tracer = self.provider.get_tracer("tests.app", "1.2.3")

    async def flush(self) -> None:
        ok = await asyncio.to_thread(self.provider.force_flush, 30_000)
        assert ok, "SDK could not flush"

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def sdk_client() -> Iterator[Callable[..., SdkClient]]:
    clients: list[SdkClient] = []

    def make(endpoints: list[str], service: str = "shop-assistant") -> SdkClient:
        client = SdkClient(endpoints, service)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def genai_attributes(
    question: str, answer: str, *, system: str = "You are a helpful shop assistant."
) -> dict[str, Any]:
    """Span attributes as the official OpenAI instrumentation writes them (current conventions)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.usage.input_tokens": 42,
        "gen_ai.usage.output_tokens": 17,
        "gen_ai.input.messages": json.dumps(
            [
                {"role": "system", "parts": [{"type": "text", "content": system}]},
                {"role": "user", "parts": [{"type": "text", "content": question}]},
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]
        ),
    }


@pytest.fixture
async def sink_pair() -> AsyncIterator[tuple[SpanSink, SpanSink]]:
    """Two sinks: what otel-judge exported, and what the app sent directly (the reference)."""
    async with SpanSink() as a, SpanSink() as b:
        yield a, b
