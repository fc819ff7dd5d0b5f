"""``otel-judge replay``: archived OTLP (protobuf and OTLP/JSON lines, traces and their content logs)
judged offline gives the scores the live pipeline gives, writes them to the store once, and gates CI
with --fail-under. The judge is a fake OpenAI-compatible server with deterministic answers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_judge.cli import main
from otel_judge.component import Settings
from otel_judge.config import Config
from otel_judge.inspector import load_files
from otel_judge.otlp import encode_otlp_json
from otel_judge.quality.model import StoredEvaluation
from otel_judge.quality.replay import replay, replay_config
from otel_judge.quality.store import QualityStore
from otel_judge.testing import FakeJudge, JudgeRequest, SpanSink

from .conftest import genai_attributes, pipeline_config, running
from .otlp_builders import RawClient, request, span

FIXTURES = Path(__file__).parent / "fixtures"
# Content in log events (two SDKs), and on span attributes (two more).
CAPTURES = [
    "otelv2ug04-event_only/single",
    "litellm-semconv_event_only/tool_call",
    "langchain-openinference-default/single",
    "litellm-default/multi_turn",
]


def score(request: JudgeRequest) -> str:
    """A deterministic judge: the score follows from the judged response."""
    return str(10 + sum(map(ord, request.response_text or "")) % 90)


def captured() -> tuple[list[ExportTraceServiceRequest], list[ExportLogsServiceRequest]]:
    """Real captures (content on spans, and content in log events) plus synthetic calls on two routes."""
    traces, logs = load_files(
        [p for name in CAPTURES for pattern in ("traces-*.pb", "logs-*.pb") for p in (FIXTURES / name).glob(pattern)]
    )
    synthetic = [
        span("chat gpt-4o-mini", {**genai_attributes(f"question {n}?", f"answer {n}"), "http.route": route})
        for n, route in enumerate(["/support", "/support", "/sales", "/support", "/sales"])
    ]
    return [*traces, request(*synthetic)], logs


def write_archive(directory: Path, traces: list[Any], logs: list[Any]) -> list[Path]:
    """Traces as OTLP/JSON lines (the Collector's file exporter), logs as protobuf requests."""
    directory.mkdir(parents=True, exist_ok=True)
    jsonl = directory / "traces.jsonl"
    jsonl.write_text("".join(encode_otlp_json(t) + "\n" for t in traces))
    files = [jsonl]
    for n, log in enumerate(logs):
        files.append(directory / f"logs-{n}.pb")
        files[-1].write_bytes(log.SerializeToString())
    return files


def comparable(rows: list[StoredEvaluation]) -> set[tuple[Any, ...]]:
    """What must agree between live and replay (not the times, nor the judge's usage)."""
    return {
        (
            r.evaluation_id,
            r.score_key,
            r.status,
            r.value,
            r.label,
            r.passed,
            tuple(sorted(r.slices.items())),
            r.sampling_probability,
            r.judged_model,
            r.trace_id,
            r.span_id,
        )
        for r in rows
    }


def live_config(sink: SpanSink, judge: FakeJudge, store: Path) -> Config:
    # Decided when the root arrives: the content logs, sent first, are joined as in production.
    sampling = {"decision_wait": "10s", "decision_wait_after_root_received": "0s"}
    return pipeline_config(sink, judge, store={"url": f"sqlite:///{store}"}, sampling=sampling)


async def stored_rows(url: Path) -> list[StoredEvaluation]:
    config = Config.model_validate({"exporters": {"debug": {}}, "store": {"url": f"sqlite:///{url}"}})
    assert config.store is not None
    store = QualityStore(config.store, Settings())
    await store.start(retention_task=False)
    try:
        return await store.rows(statuses=None)
    finally:
        await store.shutdown(0)


async def test_replay_gives_the_scores_of_the_live_pipeline(tmp_path: Path) -> None:
    """The same requests judged live (over OTLP/gRPC) and replayed from an archive file give the same
    evaluation ids, scores, labels, slices and statuses; replaying again into the live store reuses
    the stored judgments (no judge call) and writes nothing twice."""
    traces, logs = captured()
    live_db, replay_db = tmp_path / "live.db", tmp_path / "replay.db"
    async with SpanSink() as sink, FakeJudge(score) as judge:
        config = live_config(sink, judge, live_db)
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port or 0)
            for log in logs:
                await client.logs(log)
            for trace in traces:
                await client.traces(trace)
            expected_spans = sum(len(ss.spans) for t in traces for rs in t.resource_spans for ss in rs.scope_spans)
            await sink.wait_for_spans(expected_spans)
            await client.close()
            assert pipeline.store_sink is not None
            await pipeline.store_sink.flush()
        live_calls = len(judge.requests)

        archived_traces, archived_logs = load_files(write_archive(tmp_path / "archive", traces, logs))
        result = await replay(replay_config(config, store_url=f"sqlite:///{replay_db}"), archived_traces, archived_logs)
        replay_calls = len(judge.requests) - live_calls

        settings = Settings()
        again = await replay(replay_config(config), archived_traces, archived_logs, settings=settings)
        calls_after_again = len(judge.requests)

    live, replayed = await stored_rows(live_db), await stored_rows(replay_db)
    assert len(live) == 9  # 4 captured model calls + 5 synthetic ones
    assert {r.status for r in live} == {"evaluated"}
    assert comparable(replayed) == comparable(live)
    assert {r.slices.get("route") for r in live} == {None, "/support", "/sales"}
    assert replay_calls == live_calls == 9
    assert comparable([row for row in again.rows]) == comparable(live)
    assert calls_after_again == live_calls + replay_calls  # the stored judgments were reused
    assert settings.telemetry.value("otel_judge.judge.cache.hits", kind="store") == 9
    assert settings.telemetry.value("otel_judge.store.rows_written") == 0
    assert result.statuses == {"evaluated": 9, "no_content": 1}  # the tool call's follow-up carries no content
    assert result.overall("quality").n == 9
    # A backfill lands when the archived calls happened: each replayed row at its span's end time.
    ends = {
        (span.trace_id.hex(), span.span_id.hex()): span.end_time_unix_nano
        for t in traces
        for rs in t.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }
    assert [r.time_ns for r in replayed] == [ends[(r.trace_id, r.span_id)] for r in replayed]
    assert all(r.time_ns != ends[(r.trace_id, r.span_id)] for r in live)  # live rows: when judged


NONE = {"sampling_percentage": 0}


async def test_replay_judges_every_call_unless_sampled(tmp_path: Path) -> None:
    """Replay overrides the sampling policies (every model call judged); --sampled applies them."""
    calls = [span("chat", genai_attributes(f"q{n}?", f"a{n}")) for n in range(6)]
    async with SpanSink() as sink, FakeJudge(score) as judge:
        config = pipeline_config(
            sink,
            judge,
            sampling={
                "policies": [{"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}]
            },
        )
        everything = await replay(replay_config(config), [request(*calls)])
        sampled = await replay(replay_config(config, sampled=True), [request(*calls)])

    assert (everything.statuses, len(everything.records)) == ({"evaluated": 6}, 6)
    assert (sampled.statuses, len(sampled.records)) == ({"sampled_out": 6}, 0)


async def test_replay_without_an_evaluator_says_what_to_set(tmp_path: Path) -> None:
    """No judge model and no checks: a clear error instead of an empty run."""
    from otel_judge.quality.replay import ReplayError

    async with SpanSink() as sink:
        config = pipeline_config(sink, None)
        with pytest.raises(ReplayError, match=r"judge\.model"):
            await replay(replay_config(config), [request(span("chat", genai_attributes("q?", "a")))])


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otel_judge",
        "replay",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, stdout.decode(), stderr.decode()


@pytest.mark.slow
async def test_cli_prints_the_summary_and_gates_on_fail_under(tmp_path: Path) -> None:
    """`otel-judge replay FILES --fail-under` (real processes): the per-slice table on stdout, the
    judgments in the store (once, though two replays write it at the same time), exit 0 when every
    mean is at least the threshold, 1 below it."""
    traces, logs = captured()
    files = [str(p) for p in write_archive(tmp_path / "archive", traces, logs)]
    async with FakeJudge(lambda r: "40") as judge:
        config = tmp_path / "otel-judge.yaml"
        config.write_text(
            f"""
exporters: {{debug: {{}}}}
judge: {{model: {judge.model}, api_base: {judge.api_base}, api_key: sk-test}}
store: {{url: "sqlite:///{tmp_path / "ci.db"}"}}
service: {{logs: {{level: warning}}}}
"""
        )
        # Two processes at once on one SQLite file: each evaluation is still stored once.
        passing, failing = await asyncio.gather(
            run_cli(*files, "--config", str(config), "--fail-under", "40", "--by", "route", cwd=tmp_path),
            run_cli(*files, "--config", str(config), "--fail-under", "quality=40.5", cwd=tmp_path),
        )

    rc, stdout, stderr = passing
    assert rc == 0, stderr
    table = [line.split() for line in stdout.splitlines()]
    assert table[0] == ["evaluator", "route", "n", "mean", "95%", "CI", "pass", "trend"]
    assert [row[:4] for row in table[2:5]] == [
        ["quality", "-", "4", "40.0"],  # the captured calls have no http.route
        ["quality", "/sales", "2", "40.0"],
        ["quality", "/support", "3", "40.0"],
    ]
    assert "quality: n=9, mean 40, 95% CI [40, 40] over everything replayed" in stdout
    assert "model-call spans: evaluated 9, no_content 1" in stdout
    assert len(await stored_rows(tmp_path / "ci.db")) == 9
    rc, _, stderr = failing
    assert rc == 1
    assert "quality: mean 40 (n=9) is below --fail-under 40.5" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--fail-under", "high"], "--fail-under 'high': expected SCORE or EVALUATOR=SCORE", id="bad"),
        pytest.param(["--fail-under", "tone=3"], "no evaluator 'tone' in the config", id="unknown"),
        pytest.param(["--store", "mysql://x/y"], "store.url: 'mysql' is not a supported store URL", id="store"),
        pytest.param(["missing.pb", "--store", "sqlite:///x.db"], "missing.pb: cannot read", id="no-file"),
    ],
)
def test_cli_input_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """Bad options and unreadable input exit 2 with a message, before anything is judged."""
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "traces.jsonl"
    archive.write_text(encode_otlp_json(request(span("chat", genai_attributes("q?", "a")))) + "\n")
    rc = main(["replay", str(archive), *args])

    assert rc == 2
    assert message in capsys.readouterr().err
