"""The real instrumentation libraries, driving the real openai client, through a running otel-judge.

An app process uses `openai` against a fake LLM (an OpenAI-compatible server on 127.0.0.1) with one of
the official OpenTelemetry, OpenLLMetry or OpenInference instrumentations, exporting OTLP/gRPC to
otel-judge; otel-judge judges the call with a fake judge through real litellm; the sink gets every span.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from otel_judge import semconv
from otel_judge.testing import FakeJudge, JudgeRequest, SpanSink

from .conftest import pipeline_config, running

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {"otelv2": ("otel_genai", 31), "openllmetry": ("otel_genai", 42), "openinference": ("openinference", 53)}


def score_by_tag(request: JudgeRequest) -> str:
    match = re.search(r"ANSWER-(\w+)", request.response_text or "")
    return str(LIBRARIES[match.group(1)][1]) if match else "1"


@pytest.mark.parametrize("lib", list(LIBRARIES))
async def test_instrumented_app_is_judged(sink: SpanSink, lib: str) -> None:
    async with (
        FakeJudge(lambda r: f"The tag is ANSWER-{lib}.", model="gpt-4o-mini") as llm,
        FakeJudge(score_by_tag) as judge,
    ):
        config = pipeline_config(sink, judge)
        async with running(config) as pipeline:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.apps.instrumented_app",
                "--lib",
                lib,
                "--otlp",
                f"127.0.0.1:{pipeline.grpc_port}",
                "--llm-base-url",
                llm.api_base,
                "--answer-tag",
                lib,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, stderr.decode()[-2000:]
            await sink.wait_for(
                lambda: any(semconv.OTEL_JUDGE_EVALUATION_STATUS in s.attributes for s in sink.spans()), timeout=30
            )
            spans = sink.spans()

    assert stdout.decode().strip() == f"The tag is ANSWER-{lib}."
    judged = [s for s in spans if s.attributes.get(semconv.OTEL_JUDGE_EVALUATION_STATUS) == "evaluated"]
    assert len(judged) == 1, [s.attributes.get(semconv.OTEL_JUDGE_EVALUATION_STATUS) for s in spans]
    assert judged[0].attributes["gen_ai.evaluation.quality.score.value"] == LIBRARIES[lib][1]
    assert {s.span.name for s in spans} >= {"POST /support/chat"}
    assert len(judge.requests) == 1 and "helpful support assistant" in judge.requests[0].prompt
