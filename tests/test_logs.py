"""otel-judge's own logs: JSON (or text) lines with the ids of what they are about, the request's
correlation id, one line per state change, the configured level, and never content or secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_judge.component import FakeClock, Settings
from otel_judge.config import LoggingConfig
from otel_judge.errors import ConfigError
from otel_judge.logs import (
    REDACTED,
    StateWatcher,
    Throttle,
    bind_correlation,
    config_secrets,
    configure_logging,
    event,
    ids,
    resolve_level,
)
from otel_judge.otlp import py_to_any_value
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import genai_attributes, pipeline_config, running
from .otlp_builders import RawClient, request, span

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Where configure_logging writes in a test; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("otel_judge").level)
    stream = io.StringIO()
    yield stream
    for handler in [h for h in root.handlers if h not in saved[0]]:
        root.removeHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("otel_judge").setLevel(saved[2])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written, parsed: each must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def events(stream: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line.get("event") == name]


class EventSeen(logging.Handler):
    """Sets :attr:`seen` when a line with ``event == name`` is logged: a wait without sleeping."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_ = name
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.name_:
            self.seen.set()


# --------------------------------------------------------------------------- format and level


def test_json_lines_carry_the_ids_event_and_correlation_id(log_stream: io.StringIO) -> None:
    """A line about a span has its trace/span/evaluation ids, a state change its event name, and
    while a request is handled, its correlation id; nothing else is added."""
    logger = configure_logging(LoggingConfig(level="info"), env={}, stream=log_stream)
    with bind_correlation("req-42"):
        logger.warning("about a span", extra=ids(b"\x01" * 16, b"\x02" * 8, "e" * 32))
    logger.info("state", extra=event("exporter.down"))
    logger.debug("below the level")

    first, second = lines(log_stream)
    assert first["message"] == "about a span" and first["level"] == "warning" and first["logger"] == "otel_judge"
    assert (first["trace_id"], first["span_id"], first["evaluation_id"]) == ("01" * 16, "02" * 8, "e" * 32)
    assert first["correlation_id"] == "req-42"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert second == {"time": second["time"], "level": "info", "logger": "otel_judge", "message": "state",
                      "event": "exporter.down"}  # fmt: skip


def test_text_format_is_one_readable_line_with_the_ids(log_stream: io.StringIO) -> None:
    """format: text keeps the same fields, as key=value after the message."""
    logger = configure_logging(LoggingConfig(format="text"), env={}, stream=log_stream)
    logger.warning("about a span", extra=ids(span_id="ab" * 8))

    line = log_stream.getvalue().strip()
    assert " WARNING otel_judge: about a span span_id=" + "ab" * 8 in line and "\n" not in line


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        ("info", {}, logging.INFO),
        ("warning", {"OTEL_JUDGE_LOG_LEVEL": "debug"}, logging.DEBUG),
        ("debug", {"OTEL_JUDGE_LOG_LEVEL": "WARN"}, logging.WARNING),
        ("error", {"OTEL_JUDGE_LOG_LEVEL": ""}, logging.ERROR),
    ],
    ids=["config", "env-wins", "env-case-and-warn", "empty-env-ignored"],
)
def test_level_comes_from_the_environment_then_the_config(configured: Any, env: dict[str, str], expected: int) -> None:
    """OTEL_JUDGE_LOG_LEVEL overrides service.logs.level."""
    assert resolve_level(LoggingConfig(level=configured), env) == expected


def test_a_bad_level_in_the_environment_is_a_config_error() -> None:
    """The error names the variable and the accepted values."""
    with pytest.raises(ConfigError) as info:
        resolve_level(LoggingConfig(), {"OTEL_JUDGE_LOG_LEVEL": "loud"})
    assert "OTEL_JUDGE_LOG_LEVEL: 'loud' is not a log level" in info.value.problems[0]


def test_configured_secrets_are_redacted_from_every_line(log_stream: io.StringIO) -> None:
    """Second line of defence: judge keys, exporter header values (and their bearer credential)
    and the receivers' keys never survive formatting, not even inside a traceback."""
    env = {"RECV_KEY": "recv-secret-123"}
    config = pipeline_config(
        SpanSink(),
        None,
        judge={"api_key": "sk-judge-secret"},
        exporters={"otlp": {"endpoint": "127.0.0.1:1", "headers": {"authorization": "Bearer exp-secret-9"}}},
        receivers={"otlp": {"auth": {"keys_env": ["RECV_KEY"]}}},
    )
    secrets = config_secrets(config, env)
    assert set(secrets) >= {"sk-judge-secret", "Bearer exp-secret-9", "exp-secret-9", "recv-secret-123"}
    logger = configure_logging(LoggingConfig(), env={}, stream=log_stream, secrets=secrets)
    try:
        raise ValueError("token exp-secret-9 refused")
    except ValueError:
        logger.exception("calling with sk-judge-secret and recv-secret-123")

    text = log_stream.getvalue()
    assert text.count(REDACTED) == 4
    for secret in secrets:
        assert secret not in text


# --------------------------------------------------------------------------- state changes


def test_state_watcher_logs_each_change_once() -> None:
    """Breaker open / closed and judge queue full / recovered: one line per change, none per check."""
    stream = io.StringIO()
    logger = logging.getLogger("tests.state_watcher")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    settings = Settings(logger=logger)
    watcher = StateWatcher(settings, judge_queue_size=2)
    telemetry = settings.telemetry
    for breaker, depth in [(0, 0), (1, 0), (1, 2), (1, 2), (0, 1), (0, 0)]:
        telemetry.set("otel_judge.judge.breaker.open", breaker, model="m")
        telemetry.set("otel_judge.judge.queue.depth", depth)
        watcher.check()

    assert [line.split(":")[0] for line in stream.getvalue().splitlines()] == [
        "judge m",
        "judge queue full (2 judgments waiting)",
        "judge m",
        "judge queue has room again",
    ]
    assert "circuit open" in stream.getvalue().splitlines()[0]


def test_throttle_allows_one_line_per_interval_and_counts_the_rest() -> None:
    """Per key: the first occurrence, then nothing for a minute, then one line saying how many."""
    clock = FakeClock()
    throttle = Throttle(Settings(clock=clock), interval=60)
    seen = [throttle.allow("a"), throttle.allow("a"), throttle.allow("b"), throttle.allow("a")]
    clock.advance(60)
    seen.append(throttle.allow("a"))
    assert seen == [0, None, 0, None, 2]


async def test_the_judge_circuit_opening_is_one_line(sink: SpanSink, log_stream: io.StringIO) -> None:
    """A failing judge opens its breaker after failure_threshold calls: the pipeline's tick logs it
    once, however many spans fail and ticks pass."""
    configure_logging(LoggingConfig(), env={}, stream=log_stream)
    async with FakeJudge(lambda r: JudgeAnswer(status=503)) as judge:
        config = pipeline_config(
            sink,
            judge,
            judge={"retry_on_failure": {"enabled": False}, "circuit_breaker": {"failure_threshold": 2}},
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            for n in range(4):
                await client.traces(request(span("chat", genai_attributes("q?", f"A{n}"))))
                await sink.wait_for_spans(n + 1)
                await pipeline.tick()
            await client.close()

    assert len(events(log_stream, "judge.circuit_open")) == 1
    assert len(events(log_stream, "judge.circuit_closed")) == 0


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_exporter_down_up_and_queue_full_are_one_line_each_with_the_correlation_id(
    sink: SpanSink, log_stream: io.StringIO, transport: str
) -> None:
    """The backend fails, a one-request queue fills: exporter.down once (not per retry), and
    exporter.queue_full once, logged while the refused request is handled, so with its x-request-id;
    when the backend recovers, exporter.up and exporter.queue_recovered once."""
    configure_logging(LoggingConfig(), env={}, stream=log_stream)
    down = EventSeen("exporter.down")
    logging.getLogger().addHandler(down)  # removed by the log_stream fixture
    sink.fail_next(10_000)
    config = pipeline_config(
        sink,
        None,
        receivers={"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}},
        exporters={
            "otlp": {
                "endpoint": sink.endpoint,
                "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "5ms", "max_interval": "5ms", "max_elapsed_time": 0},
                "sending_queue": {"queue_size": 1, "num_consumers": 1},
            }
        },
    )
    refused: list[str] = []
    async with running(config) as pipeline, aiohttp.ClientSession() as session:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{pipeline.grpc_port}")
        export = channel.unary_unary(TRACE_METHOD)
        for n in range(4):
            body = request(span(f"s{n}")).SerializeToString()
            if transport == "grpc":
                try:
                    await export(body, metadata=(("x-request-id", f"req-{n}"),), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    refused.append(f"req-{n}")
            else:
                url = f"http://127.0.0.1:{pipeline.http_port}/v1/traces"
                headers = {"Content-Type": "application/x-protobuf", "X-Request-Id": f"req-{n}"}
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status == 429:
                        refused.append(f"req-{n}")
        assert refused, "the one-request queue must have filled"
        await asyncio.wait_for(down.seen.wait(), 10)  # the backend refused at least once
        sink.stop_failing()
        await sink.wait_for_spans(4 - len(refused))
        await channel.close()

    [full] = events(log_stream, "exporter.queue_full")
    assert full["correlation_id"] == refused[0]
    assert len(events(log_stream, "exporter.down")) == 1
    assert len(events(log_stream, "exporter.up")) == 1
    assert len(events(log_stream, "exporter.queue_recovered")) == 1
    assert "correlation_id" not in events(log_stream, "exporter.up")[0], "not logged within a request"


# --------------------------------------------------------------------------- no content, no secrets

JUDGE_KEY = "sk-judge-SEEDED-5f1c9a7e"
RECEIVER_KEY = "recv-SEEDED-0b7d2c41"
EXPORTER_TOKEN = "exporter-SEEDED-9e4a11"
PII = (
    "jane.doe.4471@example.com",
    "+1 415 555 0199",
    "DE44 5001 0517 5407 3249 31",
    "CANARY-PROMPT-7d3f91",
    "CANARY-COMPLETION-2c8e04",
    "CANARY-LOGBODY-66ab3d",
    "CANARY-SYSTEM-d00d1e",
)
SEEDED = (JUDGE_KEY, RECEIVER_KEY, EXPORTER_TOKEN, *PII)


def _judge_script(request: JudgeRequest) -> JudgeAnswer:
    """Every way a judge can fail, each echoing the prompt (as real providers' error bodies may)."""
    assert request.headers.get("Authorization") == f"Bearer {JUDGE_KEY}"
    prompt = request.prompt
    echo = {"error": {"message": f"could not process: {prompt}", "type": "invalid_request_error"}}
    for marker, answer in {
        "CASE-500": JudgeAnswer(status=500, error_body=echo),
        "CASE-400": JudgeAnswer(status=400, error_body=echo),
        "CASE-401": JudgeAnswer(status=401, error_body=echo),
        "CASE-429": JudgeAnswer(status=429, error_body=echo, headers={"Retry-After": "0"}),
        "CASE-GARBAGE": JudgeAnswer(text=f"I refuse to score this: {prompt}"),
        "CASE-HANG": JudgeAnswer(hang=True),
    }.items():
        if marker in prompt:
            return answer
    return JudgeAnswer(text=json.dumps({"score": 60, "explanation": f"judged {prompt[:80]}"}))


async def test_a_full_run_logs_no_content_no_keys_and_no_header_values(
    sink: SpanSink, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Receiver (gRPC and HTTP, with auth) -> judge (every failure, errors echoing the prompt) ->
    sink (failing, then up), at debug level with every output on and no redaction list: neither the
    seeded API keys and header values nor the seeded personal data and prompt / completion text
    appear in anything otel-judge or its libraries logged or printed."""
    monkeypatch.setenv("OTEL_JUDGE_LOG_LEVEL", "debug")
    monkeypatch.setenv("TEST_RECEIVER_KEY", RECEIVER_KEY)
    configure_logging(LoggingConfig(level="info"), stream=log_stream)  # level from the environment: debug
    sink.fail_next(3)
    async with FakeJudge(_judge_script) as judge:
        config = pipeline_config(
            sink,
            judge,
            receivers={
                "otlp": {
                    "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}},
                    "auth": {"keys_env": ["TEST_RECEIVER_KEY"]},
                }
            },
            exporters={
                "otlp": {
                    "endpoint": sink.endpoint,
                    "tls": {"insecure": True},
                    "headers": {"authorization": f"Bearer {EXPORTER_TOKEN}"},
                    "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"},
                }
            },
            judge={
                "api_key": JUDGE_KEY,
                "timeout": "300ms",
                "max_hold": "5s",
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "100ms"},
                "circuit_breaker": {"failure_threshold": 100},  # every case reaches the judge
            },
            outputs={"log_records": True, "metrics": {"otlp": True, "interval": "1s"}},
        )
        async with running(config) as pipeline, aiohttp.ClientSession() as session:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{pipeline.grpc_port}")
            export = channel.unary_unary(TRACE_METHOD)
            export_logs = channel.unary_unary(LOGS_METHOD)
            good = (("authorization", f"Bearer {RECEIVER_KEY}"), ("x-request-id", "req-leak"))
            cases = ["CASE-OK", "CASE-500", "CASE-400", "CASE-401", "CASE-429", "CASE-GARBAGE", "CASE-HANG"]
            for n, case in enumerate(cases):
                question = f"{case} My email is {PII[0]}, phone {PII[1]}, IBAN {PII[2]}. {PII[3]}"
                answer = f"{case} Noted, {PII[0]}. {PII[4]}"
                attributes = genai_attributes(question, answer, system=f"Be brief. {PII[6]}")
                body = request(span(f"chat-{n}", attributes)).SerializeToString()
                if n % 2:
                    url = f"http://127.0.0.1:{pipeline.http_port}/v1/traces"
                    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {RECEIVER_KEY}"}
                    async with session.post(url, data=body, headers=headers) as resp:
                        assert resp.status == 200
                else:
                    await export(body, metadata=good, timeout=10)
            logs = ExportLogsServiceRequest()
            record = logs.resource_logs.add().scope_logs.add().log_records.add()
            record.event_name = "gen_ai.user.message"
            py_to_any_value({"content": f"{PII[5]} {PII[0]}"}, record.body)
            await export_logs(logs.SerializeToString(), metadata=good, timeout=10)
            for value in ("Bearer wrong-key", f"Basic {RECEIVER_KEY}"):  # refused, quietly
                with pytest.raises(grpc.aio.AioRpcError):
                    await export(body, metadata=(("authorization", value),), timeout=10)
            await sink.wait_for_spans(len(cases), timeout=30)
            await pipeline.tick()
            await channel.close()
            judge.release()
        await asyncio.sleep(0)  # let aiohttp's and grpc's last callbacks log, if they would

    captured = capfd.readouterr()
    written = log_stream.getvalue() + captured.out + captured.err
    assert lines(log_stream), "the run logged something"
    assert events(log_stream, "exporter.down") and events(log_stream, "exporter.up")
    assert any("judge" in line["message"] and "failing" in line["message"] for line in lines(log_stream))
    for seeded in SEEDED:
        assert seeded not in written, f"{seeded!r} leaked into the logs"
    assert "could not process" not in written, "a judge error body reached the logs"
