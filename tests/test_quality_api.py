"""The quality API over real HTTP and gRPC servers, reading a real store: weighted estimates against
hand-computed values, windows and slices, the regression state, clear errors, and generated code that
matches the .proto."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from scipy import stats

from otel_judge.component import FakeClock, Settings
from otel_judge.config import QualityApiConfig, validate_config
from otel_judge.errors import ConfigError
from otel_judge.model import EvaluationStatus
from otel_judge.quality.api import QualityApi
from otel_judge.quality.v1 import quality_pb2, quality_pb2_grpc
from otel_judge.testing import FakeJudge, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request
from .quality_support import BACKENDS, NOW_NS, open_store, record

ROOT = Path(__file__).resolve().parent.parent
HOUR_NS = 3600 * 10**9
SLICES = ["model", "route", "prompt_version", "service"]


def hand_computed() -> dict[str, float]:
    """values 60, 80, 90 sampled at 50%, 100%, 25% -> weights 2, 1, 4; passes F, T, T."""
    weights, values = [2.0, 1.0, 4.0], [60.0, 80.0, 90.0]
    mean = (2 * 60 + 80 + 4 * 90) / 7  # 80
    n_eff = 7**2 / (4 + 1 + 16)  # Kish: 7/3
    variance = (2 * 20**2 + 0 + 4 * 10**2) / 7 * n_eff / (n_eff - 1)  # 300
    half = stats.t.ppf(0.975, n_eff - 1) * math.sqrt(variance) / math.sqrt(n_eff)
    assert sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights) == mean
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "pass_rate": 5 / 7, "n_effective": n_eff}


def seed_records() -> list[Any]:
    a = {"model": "gpt-4o-mini", "route": "/support"}
    return [
        record(1, 60.0, slices=a, probability=0.5, passed=False, time_ns=NOW_NS - HOUR_NS // 2),
        record(2, 80.0, slices=a, probability=1.0, passed=True, time_ns=NOW_NS - HOUR_NS // 3),
        record(3, 90.0, slices=a, probability=0.25, passed=True, time_ns=NOW_NS - 10),
        record(4, 10.0, slices=a, time_ns=NOW_NS - 2 * HOUR_NS),  # outside a 1h window
        record(5, 20.0, slices={"model": "gpt-4o", "route": "/support"}, time_ns=NOW_NS - 10),  # another model
        record(6, None, slices=a, status=EvaluationStatus.TIMEOUT, time_ns=NOW_NS - 10),  # no score
        record(7, 0.0, slices=a, evaluator="tone", time_ns=NOW_NS - 10),  # another evaluator
    ]


@asynccontextmanager
async def serving(
    backend: str,
    tmp_path: Path,
    regression_for: Callable[[str, Mapping[str, str]], dict[str, Any] | None] | None = None,
) -> AsyncIterator[QualityApi]:
    clock = FakeClock(wall_ns=NOW_NS - int(1000 * 1e9))  # time_ns() == NOW_NS
    settings = Settings(clock=clock)
    async with open_store(backend, tmp_path, settings) as store:
        await store.insert(seed_records())
        api = QualityApi(
            QualityApiConfig(endpoint="127.0.0.1:0", grpc_endpoint="127.0.0.1:0"),
            store,
            settings,
            slice_names=SLICES,
            evaluators=["quality", "tone"],
            regression_for=regression_for,
        )
        await api.start()
        try:
            yield api
        finally:
            await api.shutdown(clock.monotonic() + 1)


async def get(api: QualityApi, path: str, params: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{api.port}{path}", params=params) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_http_serves_the_weighted_estimate_of_a_slice(backend: str, tmp_path: Path) -> None:
    """GET /v1/quality for one model over 1h: n, the inverse-probability-weighted mean, its 95% CI
    (Student t with the Kish effective n), the weighted pass rate, the statuses, and no regression."""
    async with serving(backend, tmp_path) as api:
        status, body = await get(
            api, "/v1/quality", [("evaluator", "quality"), ("model", "gpt-4o-mini"), ("window", "1h")]
        )

    expected = hand_computed()
    assert status == 200
    assert body["n"] == 3
    for key, value in expected.items():
        assert body[key] == pytest.approx(value, rel=1e-9), key
    assert body["regression"] is None
    assert body["statuses"] == {"evaluated": 3, "timeout": 1}
    assert body["slice"] == {"model": "gpt-4o-mini"}
    assert body["scale"] == {"low": 0, "high": 100}
    assert (body["start_time_unix_nano"], body["end_time_unix_nano"]) == (NOW_NS - HOUR_NS, NOW_NS)


@pytest.mark.parametrize(
    ("params", "n", "mean"),
    [
        pytest.param([("evaluator", "quality")], 4, (560 + 20) / 8, id="all-traffic-default-window"),
        pytest.param([("evaluator", "quality"), ("window", "3h")], 5, (560 + 20 + 10) / 9, id="wider-window"),
        pytest.param([("evaluator", "quality"), ("model", "gpt-4o")], 1, 20.0, id="other-model"),
        pytest.param([("evaluator", "quality"), ("model", "unknown")], 0, None, id="no-data"),
        pytest.param([("evaluator", "tone"), ("route", "/support")], 1, 0.0, id="other-evaluator"),
        pytest.param([("evaluator", "quality"), ("model", "gpt-4o"), ("route", "/sales")], 0, None, id="both-slices"),
    ],
)
async def test_windows_and_slices_select_the_rows(
    tmp_path: Path, params: list[tuple[str, str]], n: int, mean: float | None
) -> None:
    """The window reaches back from now (1h by default); every slice parameter must match."""
    async with serving("sqlite", tmp_path) as api:
        status, body = await get(api, "/v1/quality", params)

    assert status == 200
    assert body["n"] == n
    assert body["mean"] == (pytest.approx(mean) if mean is not None else None)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param([("model", "gpt-4o")], "evaluator: required", id="no-evaluator"),
        pytest.param([("evaluator", "nope")], "evaluator: unknown 'nope' (configured: quality, tone)", id="unknown"),
        pytest.param([("evaluator", "quality"), ("colour", "red")], "unknown parameter 'colour'", id="unknown-slice"),
        pytest.param([("evaluator", "quality"), ("window", "1x")], "window: '1x' is not a duration", id="bad-window"),
        pytest.param([("evaluator", "quality"), ("window", "0")], "window: must be > 0", id="zero-window"),
        pytest.param([("evaluator", "quality"), ("model", "a"), ("model", "b")], "model: given more", id="twice"),
        pytest.param([("evaluator", "quality"), ("score", "tone")], "score: 'tone' is not a score of", id="score"),
        pytest.param([("evaluator", "quality"), ("model", "")], "model: empty slice value", id="empty"),
    ],
)
async def test_bad_parameters_get_a_clear_400(tmp_path: Path, params: list[tuple[str, str]], message: str) -> None:
    """Every bad parameter is a 400 whose error names the parameter and what is allowed."""
    async with serving("sqlite", tmp_path) as api:
        status, body = await get(api, "/v1/quality", params)

    assert status == 400
    assert message in body["error"]


async def test_regression_state_comes_from_the_detector(tmp_path: Path) -> None:
    """``regression`` is what the injected lookup returns for (score key, slice), null when it returns
    None, and null (the estimate still served) when the lookup fails."""
    alert = {"evaluator": "quality", "slice": {"model": "gpt-4o-mini"}, "status": "firing", "p_value": 0.0001}
    asked: list[tuple[str, dict[str, str]]] = []

    def lookup(score: str, slices: Mapping[str, str]) -> dict[str, Any] | None:
        asked.append((score, dict(slices)))
        if slices.get("route") == "/boom":
            raise RuntimeError("detector trouble")
        return alert if slices.get("model") == "gpt-4o-mini" else None

    async with serving("sqlite", tmp_path, lookup) as api:
        _, firing = await get(api, "/v1/quality", [("evaluator", "quality"), ("model", "gpt-4o-mini")])
        _, quiet = await get(api, "/v1/quality", [("evaluator", "quality"), ("model", "gpt-4o")])
        status, failing = await get(api, "/v1/quality", [("evaluator", "quality"), ("route", "/boom")])

    assert firing["regression"] == alert
    assert quiet["regression"] is None
    assert (status, failing["regression"]) == (200, None)
    assert asked[0] == ("quality", {"model": "gpt-4o-mini"})


async def test_slices_lists_the_known_values(tmp_path: Path) -> None:
    """GET /v1/slices lists every configured slice's values, optionally within a window."""
    async with serving("sqlite", tmp_path) as api:
        _, everything = await get(api, "/v1/slices", [])
        _, recent = await get(api, "/v1/slices", [("window", "1m")])
        status, bad = await get(api, "/v1/slices", [("model", "x")])

    assert everything == {"slices": {"model": ["gpt-4o", "gpt-4o-mini"], "route": ["/support"]}}
    assert recent == everything  # the newest rows are 10 ns old
    assert status == 400 and "unknown parameter 'model'" in bad["error"]


async def test_an_unreadable_store_is_a_503(tmp_path: Path) -> None:
    """When the store cannot be read the API says so with 503 (retry later), not a crash."""
    async with serving("sqlite", tmp_path) as api:
        await api.store.shutdown(0)
        status, body = await get(api, "/v1/quality", [("evaluator", "quality")])

    assert status == 503
    assert "store cannot be read" in body["error"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_grpc_get_quality_gives_the_same_answer(backend: str, tmp_path: Path) -> None:
    """QualityService/GetQuality answers what the HTTP API answers; unset fields mean no data."""
    alert = {"status": "firing", "p_value": 0.001}
    async with serving(
        backend, tmp_path, lambda score, slices: alert if slices.get("model") == "gpt-4o-mini" else None
    ) as api:
        _, http = await get(api, "/v1/quality", [("evaluator", "quality"), ("model", "gpt-4o-mini")])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
            stub = quality_pb2_grpc.QualityServiceStub(channel)
            reply = await stub.GetQuality(
                quality_pb2.GetQualityRequest(
                    evaluator="quality", slices={"model": "gpt-4o-mini"}, window=Duration(seconds=3600)
                ),
                timeout=10,
            )
            empty = await stub.GetQuality(
                quality_pb2.GetQualityRequest(evaluator="quality", slices={"model": "none"}), timeout=10
            )

    assert reply.n == http["n"] == 3
    for key in ("mean", "ci_low", "ci_high", "pass_rate", "n_effective"):
        assert getattr(reply, key) == pytest.approx(http[key]), key
    assert dict(reply.statuses) == http["statuses"]
    assert (reply.scale_low, reply.scale_high) == (0, 100)
    assert dict(reply.regression) == alert
    assert empty.n == 0
    assert not empty.HasField("mean") and not empty.HasField("ci_low") and not empty.HasField("regression")


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        pytest.param({"evaluator": "quality", "slices": {"colour": "red"}}, "unknown parameter 'colour'", id="slice"),
        pytest.param({"evaluator": ""}, "evaluator: required", id="no-evaluator"),
        pytest.param({"evaluator": "quality", "window": Duration(seconds=-5)}, "window: must be > 0", id="window"),
    ],
)
async def test_grpc_bad_arguments_are_invalid_argument(
    tmp_path: Path, request_fields: dict[str, Any], message: str
) -> None:
    """Bad parameters are INVALID_ARGUMENT with the same message as the HTTP 400."""
    async with serving("sqlite", tmp_path) as api, grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
        stub = quality_pb2_grpc.QualityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetQuality(quality_pb2.GetQualityRequest(**request_fields), timeout=10)

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")


async def test_grpc_list_slices(tmp_path: Path) -> None:
    """QualityService/ListSlices lists the known values per slice."""
    async with serving("sqlite", tmp_path) as api, grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
        reply = await quality_pb2_grpc.QualityServiceStub(channel).ListSlices(
            quality_pb2.ListSlicesRequest(), timeout=10
        )

    assert {k: list(v.values) for k, v in reply.slices.items()} == {
        "model": ["gpt-4o", "gpt-4o-mini"],
        "route": ["/support"],
    }


def test_generated_grpc_code_is_current(tmp_path: Path) -> None:
    """Regenerating from proto/ with grpcio-tools (what `make proto` runs) gives the committed files."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(ROOT / "proto/otel_judge/quality/v1/quality.proto"),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("quality_pb2.py", "quality_pb2.pyi", "quality_pb2_grpc.py"):
        generated = (tmp_path / "otel_judge/quality/v1" / name).read_text()
        committed = (ROOT / "otel_judge/quality/v1" / name).read_text()
        assert generated == committed, f"otel_judge/quality/v1/{name} is stale: run `make proto`"


@pytest.mark.parametrize(
    ("quality", "store", "problem"),
    [
        pytest.param(
            {"api": {"endpoint": "127.0.0.1:0"}}, None, "quality.api reads the evaluation store", id="nostore"
        ),
        pytest.param({"slices": {"window": "span.x"}}, None, "slice name 'window' is a parameter", id="reserved"),
    ],
)
def test_config_errors_of_the_api(quality: dict[str, Any], store: dict[str, Any] | None, problem: str) -> None:
    """The API needs the store; no slice may be named like an API parameter."""
    data: dict[str, Any] = {"exporters": {"debug": {}}, "quality": quality}
    if store is not None:
        data["store"] = store
    with pytest.raises(ConfigError) as raised:
        validate_config(data)
    assert any(problem in p for p in raised.value.problems)


async def test_the_pipeline_serves_the_quality_of_what_it_judged(tmp_path: Path) -> None:
    """End to end: spans judged by a running pipeline reach the store through its sink, and its quality
    API (HTTP and gRPC, on the configured endpoints) answers for them."""
    async with SpanSink() as sink, FakeJudge(lambda r: "70" if "Paris" in (r.response_text or "") else "30") as judge:
        config = pipeline_config(
            sink,
            judge,
            store={"url": f"sqlite:///{tmp_path / 'q.db'}"},
            quality={"api": {"endpoint": "127.0.0.1:0", "grpc_endpoint": "127.0.0.1:0"}},
        )
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port or 0)
            await client.traces(request(genai_span("Paris."), genai_span("Lyon."), genai_span("Paris!")))
            await sink.wait_for_spans(3)
            await client.close()
            assert pipeline.store_sink is not None and pipeline.quality_api is not None
            await pipeline.store_sink.flush()
            status, body = await get(pipeline.quality_api, "/v1/quality", [("evaluator", "quality")])
            async with grpc.aio.insecure_channel(f"127.0.0.1:{pipeline.quality_api.grpc_port}") as channel:
                reply = await quality_pb2_grpc.QualityServiceStub(channel).GetQuality(
                    quality_pb2.GetQualityRequest(evaluator="quality", slices={"service": "app"}), timeout=10
                )

    assert (status, body["n"], body["statuses"]) == (200, 3, {"evaluated": 3})
    assert body["mean"] == pytest.approx((70 + 30 + 70) / 3)
    assert (reply.n, reply.mean) == (3, pytest.approx(body["mean"]))
