"""The OTLP/HTTP exporter, end to end: a running pipeline exports into a real OTLP/HTTP server
(:class:`HttpSpanSink`) that can fail, throttle, refuse large bodies and drop connections."""

from __future__ import annotations

import email.utils
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_judge.auth import server_ssl_context
from otel_judge.component import Settings
from otel_judge.config import Config, TlsServerConfig, load_config_text
from otel_judge.errors import ConfigError
from otel_judge.exporter import OtlpHttpExporter, parse_retry_after
from otel_judge.testing import HttpSpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, request, span
from .test_security import Pki, pki  # noqa: F401 - the module-scoped throw-away PKI fixture


def http_config(sink: HttpSpanSink, **exporter: Any) -> Config:
    """A pipeline (gRPC in, no judge) exporting only over OTLP/HTTP to ``sink``."""
    otlphttp = {
        "endpoint": sink.endpoint,
        "retry_on_failure": {"initial_interval": "10ms", "max_interval": "50ms"},
        **exporter,
    }
    # pipeline_config merges one level deep: "otlp": None removes its default gRPC exporter.
    return pipeline_config(sink, None, exporters={"otlp": None, "otlphttp": otlphttp})  # type: ignore[arg-type]


@pytest.fixture
async def http_sink() -> AsyncIterator[HttpSpanSink]:
    async with HttpSpanSink() as s:
        yield s


def failed(settings: Settings, signal: str = "traces") -> float:
    return settings.telemetry.value("otel_judge.exporter.failed", exporter="otlphttp", signal=signal)


@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_spans_arrive_exactly_once_with_headers_and_compression(
    http_sink: HttpSpanSink, compression: str
) -> None:
    """Two requests reach the backend as protobuf POSTs to /v1/traces, gzip-encoded or not, with the
    configured headers; every span arrives once and is counted as sent."""
    settings = Settings()
    sent = [request(span("a"), span("b")), request(span("c"))]
    config = http_config(http_sink, compression=compression, headers={"Authorization": "Bearer t0k", "x-tenant": "7"})
    async with running(config, settings) as pipeline:
        client = RawClient(pipeline.grpc_port)
        for req in sent:
            await client.traces(req)
        received = await http_sink.wait_for_spans(3)
        await client.close()

    assert sorted(r.span.name for r in received) == ["a", "b", "c"]
    assert len({r.key for r in received}) == 3
    assert {a.path for a in http_sink.attempts} == {"/v1/traces"}
    for headers in http_sink.headers:
        assert headers["content-type"] == "application/x-protobuf"
        assert headers.get("content-encoding", "identity") == ("gzip" if compression == "gzip" else "identity")
        assert headers["authorization"] == "Bearer t0k"
        assert headers["x-tenant"] == "7"
        assert headers["user-agent"].startswith("otel-judge/")
    assert settings.telemetry.value("otel_judge.exporter.sent", exporter="otlphttp", signal="traces") == 3


async def test_logs_go_to_v1_logs(http_sink: HttpSpanSink) -> None:
    """Log records are POSTed to /v1/logs, unchanged."""
    sent = ExportLogsServiceRequest()
    record = sent.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "hello"
    async with running(http_config(http_sink)) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.logs(sent)
        await http_sink.wait_for(lambda: bool(http_sink.log_requests))
        await client.close()

    assert http_sink.log_requests == [sent]
    assert [a.path for a in http_sink.attempts] == ["/v1/logs"]


async def test_explicit_signal_urls_override_the_base_endpoint(http_sink: HttpSpanSink) -> None:
    """traces_endpoint is used as given (no /v1/traces appended to a base)."""
    config = http_config(http_sink, endpoint=None, traces_endpoint=f"{http_sink.endpoint}/v1/traces",
                         logs_endpoint=f"{http_sink.endpoint}/v1/logs")  # fmt: skip
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("x")))
        await http_sink.wait_for_spans(1)
        await client.close()

    assert [a.path for a in http_sink.attempts] == ["/v1/traces"]


RETRY_HINTS = {
    # id: (status, Retry-After) -- each answered once before success
    "503-seconds": (503, 0.05),
    "429-seconds": (429, 0.05),
    "502-no-hint": (502, None),
    "504-http-date-in-the-past": (504, email.utils.formatdate(0, usegmt=True)),
}


@pytest.mark.parametrize(("status", "retry_after"), RETRY_HINTS.values(), ids=RETRY_HINTS.keys())
async def test_retryable_statuses_are_retried_honouring_retry_after(
    http_sink: HttpSpanSink, status: int, retry_after: float | str | None
) -> None:
    """429/502/503/504 are retried; the Retry-After hint (seconds or an HTTP date) replaces the backoff,
    which is set to 1ms here so that only an honoured hint can explain a longer gap."""
    http_sink.fail_next(1, status, retry_after)
    settings = Settings()
    retry = {"initial_interval": "1ms", "max_interval": "1ms", "randomization_factor": 0}
    async with running(http_config(http_sink, retry_on_failure=retry), settings) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("a"), span("b")))
        received = await http_sink.wait_for_spans(2)
        await client.close()

    assert sorted(r.span.name for r in received) == ["a", "b"]
    assert [a.status for a in http_sink.attempts] == [status, 200]
    assert settings.telemetry.value("otel_judge.exporter.retries", exporter="otlphttp") == 1
    gap = http_sink.attempts[1].at - http_sink.attempts[0].at
    if isinstance(retry_after, float):
        assert gap >= retry_after * 0.9, f"retried after {gap:.3f}s, hint was {retry_after}s"
    assert failed(settings) == 0


PERMANENT = {"400": 400, "401": 401, "404": 404, "500": 500, "501": 501}


@pytest.mark.parametrize("status", PERMANENT.values(), ids=PERMANENT.keys())
async def test_other_statuses_drop_the_request_and_count_it(http_sink: HttpSpanSink, status: int) -> None:
    """Any other 4xx/5xx is not retried: the request is dropped and counted in exporter.failed; the next
    request goes through (one sender, so it is answered after the dropped one)."""
    http_sink.fail_next(1, status)
    settings = Settings()
    config = http_config(http_sink, sending_queue={"num_consumers": 1})
    async with running(config, settings) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("dropped-1"), span("dropped-2")))
        await client.traces(request(span("after")))
        received = await http_sink.wait_for_spans(1)
        await client.close()

    assert [r.span.name for r in received] == ["after"]
    assert [a.status for a in http_sink.attempts] == [status, 200]
    assert failed(settings) == 2
    assert settings.telemetry.value("otel_judge.exporter.retries") == 0


async def test_partial_success_is_counted_as_failed(http_sink: HttpSpanSink) -> None:
    """A 200 whose body says some spans were rejected counts them as failed (not retried)."""
    http_sink.reject_next(1, "span too old")
    settings = Settings()
    async with running(http_config(http_sink), settings) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("a"), span("b")))
        await http_sink.wait_for_spans(2)
        await client.close()

    assert failed(settings) == 1
    assert settings.telemetry.value("otel_judge.exporter.retries") == 0


async def test_a_merged_export_refused_with_413_is_split_and_delivered() -> None:
    """The backend takes at most 64 KB; ten 20 KB requests queued during an outage are merged, refused
    with 413, split and sent one by one: every span arrives exactly once. A single request that is
    itself too large is dropped and counted."""
    big = "x" * 2_000
    settings = Settings()
    async with HttpSpanSink(max_body_bytes=64 * 1024) as sink:
        sink.fail_next(10_000, 503, retry_after=0.02)
        config = http_config(sink, compression="none", sending_queue={"num_consumers": 1})
        async with running(config, settings) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for i in range(10):
                await client.traces(request(*(span(f"s{i}-{j}", {"blob": big}) for j in range(10))))
            sink.stop_failing()  # the one in flight goes alone; the nine queued behind it are merged
            received = await sink.wait_for_spans(100)
            await client.traces(request(*(span(f"huge-{j}", {"blob": big * 10}) for j in range(5))))  # ~100 KB
            await client.traces(request(span("after-huge")))
            received = await sink.wait_for_spans(101)
            await client.close()

    statuses = [a.status for a in sink.attempts]
    assert statuses[0] == 503 and 413 in statuses
    assert len({r.key for r in received}) == len(received) == 101
    assert failed(settings) == 5


async def test_dropped_connections_are_retried_and_readiness_follows_the_queue(http_sink: HttpSpanSink) -> None:
    """A backend that drops connections: the exporter retries; readiness stays true while the queue has
    room and turns false when it is full too; everything is delivered once the backend answers again."""
    http_sink.disconnect_next(10_000)
    settings = Settings()
    config = http_config(http_sink, sending_queue={"num_consumers": 1, "queue_size": 1})
    async with running(config, settings) as pipeline:
        exporter = pipeline.exporter
        assert isinstance(exporter, OtlpHttpExporter)
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("first")))
        # The second attempt is only made after the first one failed: the failure has been seen.
        await http_sink.wait_for(lambda: len(http_sink.attempts) >= 2)
        ready, why = exporter.ready()
        assert ready and "Disconnected" in why, why
        await client.traces(request(span("second")))  # waits in the queue: it is now full
        ready, why = exporter.ready()
        assert not ready and "unreachable" in why and "full" in why, why
        http_sink.stop_failing()
        received = await http_sink.wait_for_spans(2)
        ready, why = exporter.ready()
        await client.close()

    assert sorted(r.span.name for r in received) == ["first", "second"]
    assert ready and "reachable" in why
    assert settings.telemetry.value("otel_judge.exporter.retries", exporter="otlphttp") >= 1


async def test_https_with_a_private_ca_and_a_client_certificate(pki: Pki) -> None:  # noqa: F811
    """https:// with tls.ca_file trusts the private CA; cert_file/key_file answer the server's mTLS."""
    server_tls = TlsServerConfig(cert_file=str(pki.server_cert), key_file=str(pki.server_key),
                                 client_ca_file=str(pki.ca))  # fmt: skip
    context: ssl.SSLContext = server_ssl_context(server_tls, "test")
    async with HttpSpanSink(ssl_context=context) as sink:
        tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        async with running(http_config(sink, tls=tls)) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(span("secure")))
            received = await sink.wait_for_spans(1)
            await client.close()

    assert sink.endpoint.startswith("https://")
    assert [r.span.name for r in received] == ["secure"]


# --------------------------------------------------------------------------- configuration


ENV_DEFAULTS = {
    # id: (exporter block, env, expected (endpoint, traces_endpoint, headers))
    "endpoint-from-env": (
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k%201"},
        ("http://collector:4318", None, {"api-key": "k 1"}),
    ),
    "file-wins": (
        {"endpoint": "https://backend", "headers": {"api-key": "mine"}},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=env,x=1"},
        ("https://backend", None, {"api-key": "mine", "x": "1"}),
    ),
    "traces-endpoint-is-a-full-url": (
        {"logs_endpoint": "http://c/v1/logs"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom/traces"},
        (None, "http://c:4318/custom/traces", {}),
    ),
}


@pytest.mark.parametrize(("block", "env", "expected"), ENV_DEFAULTS.values(), ids=ENV_DEFAULTS.keys())
def test_env_defaults_fill_otlphttp(
    block: dict[str, Any], env: dict[str, str], expected: tuple[str | None, str | None, dict[str, str]]
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS fill exporters.otlphttp where the file leaves them unset."""
    import json

    config, _ = load_config_text(json.dumps({"exporters": {"otlphttp": block}}), env)
    otlphttp = config.exporters.otlphttp
    assert otlphttp is not None
    assert (otlphttp.endpoint, otlphttp.traces_endpoint, otlphttp.headers) == expected


BAD_ENDPOINTS = {
    "missing": ({}, "exporters.otlphttp.endpoint: not set"),
    "no-scheme": ({"endpoint": "collector:4318"}, "must start with http:// or https://"),
    "logs-missing": ({"traces_endpoint": "http://c/v1/traces"}, "nor exporters.otlphttp.logs_endpoint"),
}


@pytest.mark.parametrize(("block", "message"), BAD_ENDPOINTS.values(), ids=BAD_ENDPOINTS.keys())
def test_bad_endpoints_fail_at_start_up(block: dict[str, Any], message: str) -> None:
    """A missing or scheme-less URL is a configuration error naming the key, before anything starts."""
    import json

    config, _ = load_config_text(json.dumps({"exporters": {"otlphttp": block}}), {})
    assert config.exporters.otlphttp is not None
    with pytest.raises(ConfigError) as caught:
        OtlpHttpExporter(config.exporters.otlphttp, Settings())
    assert message in str(caught.value)


RETRY_AFTER = {
    # id: (header, now, expected seconds)
    "seconds": ("7", 0.0, 7.0),
    "decimal": ("0.05", 0.0, 0.05),
    "http-date": ("Thu, 01 Jan 1970 00:00:30 GMT", 10.0, 20.0),
    "http-date-past": ("Thu, 01 Jan 1970 00:00:30 GMT", 100.0, 0.0),
    "negative": ("-3", 0.0, 0.0),
    "absent": (None, 0.0, None),
    "garbage": ("soon", 0.0, None),
    "infinite": ("inf", 0.0, None),
}


@pytest.mark.parametrize(("header", "now", "expected"), RETRY_AFTER.values(), ids=RETRY_AFTER.keys())
def test_retry_after_parsing(header: str | None, now: float, expected: float | None) -> None:
    """Retry-After as delay-seconds or an HTTP date; unusable values give no hint; never negative."""
    assert parse_retry_after(header, now) == expected
