"""The quality API: "how good is slice X for evaluator Y over the last W", for routers and dashboards.

HTTP JSON on ``quality.api.endpoint``:

* ``GET /v1/quality?evaluator=NAME&<slice>=<value>...&window=1h[&score=KEY]`` -> the weighted
  estimate (``n``, ``mean``, ``ci_low``, ``ci_high``, ``pass_rate``, ...) and ``regression`` (the open
  alert of that evaluator and slice, or null). 400 with ``{"error": ...}`` for a bad parameter, 503
  when the store cannot be read.
* ``GET /v1/slices[?window=24h]`` -> ``{"slices": {name: [values...]}}``.

gRPC on ``quality.api.grpc_endpoint``: ``otel_judge.quality.v1.QualityService`` (GetQuality,
ListSlices; ``proto/otel_judge/quality/v1/quality.proto``) with the same answers; bad parameters
are INVALID_ARGUMENT, an unreadable store UNAVAILABLE (the one table in ``errors.py``).

Estimates come from :func:`otel_judge.quality.stats.estimate` over the store's rows: weights are
``1 / otel_judge.sampling.probability``, so a slice judged at 10% counts ten times per judged span.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from otel_judge.component import Settings
from otel_judge.config import QUALITY_API_PARAMETERS, QualityApiConfig, parse_duration
from otel_judge.errors import MalformedError, OtelJudgeError, RetryableError, status_for
from otel_judge.health import listen_http
from otel_judge.quality.stats import estimate
from otel_judge.quality.store import QualityStore

__all__ = ["DEFAULT_WINDOW", "QualityApi", "QualityQuery", "RegressionLookup", "parse_query"]

DEFAULT_WINDOW = 3600.0
CONFIDENCE = 0.95

#: ``regression_for(score_key, slices)``: the open regression alert of that evaluator (score key) and
#: slice as a JSON-able dict, or None. Injected by the pipeline from the regression detector.
RegressionLookup = Callable[[str, Mapping[str, str]], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class QualityQuery:
    evaluator: str
    score: str  # the score key; the evaluator name unless a criterion was asked for
    slices: dict[str, str]
    window: float  # seconds


def _window(text: str | None, default: float | None) -> float | None:
    if text is None or text == "":
        return default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise MalformedError(f"window: {exc}") from None
    if seconds <= 0:
        raise MalformedError("window: must be > 0 (e.g. 15m, 1h, 24h)")
    return seconds


def parse_query(
    params: Mapping[str, str] | Collection[tuple[str, str]],
    *,
    slice_names: Collection[str],
    evaluators: Collection[str],
) -> QualityQuery:
    """Validate the parameters of a quality query; :class:`MalformedError` says what is wrong."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise MalformedError(f"{key}: given more than once")
        seen[key] = value
    unknown = [k for k in seen if k not in QUALITY_API_PARAMETERS and k not in slice_names]
    if unknown:
        raise MalformedError(
            f"unknown parameter {unknown[0]!r}: slices are {', '.join(sorted(slice_names)) or '(none configured)'}; "
            f"other parameters: {', '.join(sorted(QUALITY_API_PARAMETERS))}"
        )
    evaluator = seen.get("evaluator", "")
    if not evaluator:
        raise MalformedError(f"evaluator: required (one of {', '.join(sorted(evaluators)) or 'none configured'})")
    if evaluator not in evaluators:
        raise MalformedError(f"evaluator: unknown {evaluator!r} (configured: {', '.join(sorted(evaluators))})")
    score = seen.get("score") or evaluator
    if score != evaluator and not score.startswith(evaluator + "."):
        raise MalformedError(f"score: {score!r} is not a score of {evaluator!r} (use {evaluator} or {evaluator}.NAME)")
    slices = {k: v for k, v in seen.items() if k in slice_names}
    empty = [k for k, v in slices.items() if v == ""]
    if empty:
        raise MalformedError(f"{empty[0]}: empty slice value")
    window = _window(seen.get("window"), DEFAULT_WINDOW)
    assert window is not None
    return QualityQuery(evaluator, score, slices, window)


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


class QualityApi:
    """Serves quality estimates from ``store`` over HTTP (always) and gRPC (``grpc_endpoint`` set).

    ``port`` / ``grpc_port`` are the bound ports once started (``:0`` in the config picks one).
    ``start`` raises OSError naming the endpoint when it cannot listen."""

    def __init__(
        self,
        config: QualityApiConfig,
        store: QualityStore,
        settings: Settings,
        *,
        slice_names: Collection[str],
        evaluators: Collection[str],
        regression_for: RegressionLookup | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.settings = settings
        self.slice_names = frozenset(slice_names)
        self.evaluators = frozenset(evaluators)
        self.regression_for = regression_for
        self._runner: web.AppRunner | None = None
        self._grpc: grpc.aio.Server | None = None
        self.port: int | None = None
        self.grpc_port: int | None = None

    # ------------------------------------------------------------------ the answers

    async def quality(self, query: QualityQuery) -> dict[str, Any]:
        """The estimate for ``query`` as the HTTP API answers it. Raises RetryableError when the
        store cannot be read."""
        end_ns = self.settings.clock.time_ns()
        start_ns = end_ns - int(query.window * 1e9)
        try:
            rows = await self.store.scores(evaluator=query.evaluator, since_ns=start_ns, slices=query.slices)
        except (SQLAlchemyError, OSError, RuntimeError) as exc:
            self.settings.telemetry.add("otel_judge.store.errors", operation="query")
            raise RetryableError(f"the store cannot be read: {type(exc).__name__}") from None
        scored = [r for r in rows if r.score_key == query.score and r.value is not None]
        statuses: Counter[str] = Counter()
        for _, status in {(r.evaluation_id, r.status) for r in rows}:
            statuses[status] += 1
        est = estimate(
            [r.value for r in scored if r.value is not None],
            [r.weight for r in scored],
            [r.passed for r in scored],
            confidence=CONFIDENCE,
        )
        latest = scored[-1] if scored else None
        return {
            "evaluator": query.evaluator,
            "score": query.score,
            "slice": dict(query.slices),
            "window_seconds": query.window,
            "start_time_unix_nano": start_ns,
            "end_time_unix_nano": end_ns,
            "n": est.n,
            "mean": _number(est.mean),
            "ci_low": _number(est.ci_low),
            "ci_high": _number(est.ci_high),
            "confidence": CONFIDENCE,
            "pass_rate": _number(est.pass_rate),
            "n_effective": est.n_effective,
            "scale": {"low": latest.low, "high": latest.high} if latest is not None else None,
            "statuses": dict(sorted(statuses.items())),
            "regression": self._regression(query),
        }

    def _regression(self, query: QualityQuery) -> dict[str, Any] | None:
        if self.regression_for is None:
            return None
        try:
            return self.regression_for(query.score, dict(query.slices))
        except Exception:  # the detector's trouble must not take the estimate down
            self.settings.logger.exception("regression lookup failed")
            return None

    async def slices(self, window: float | None) -> dict[str, list[str]]:
        since = None if window is None else self.settings.clock.time_ns() - int(window * 1e9)
        try:
            values = await self.store.slice_values(since)
        except (SQLAlchemyError, OSError, RuntimeError) as exc:
            self.settings.telemetry.add("otel_judge.store.errors", operation="query")
            raise RetryableError(f"the store cannot be read: {type(exc).__name__}") from None
        return {name: vals for name, vals in values.items() if name in self.slice_names}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/v1/quality", self._http_quality)
        app.router.add_get("/v1/slices", self._http_slices)
        runner = await listen_http(app, self.config.endpoint, "quality.api.endpoint", shutdown_timeout=1.0)
        self._runner = runner
        self.port = runner.addresses[0][1]
        if self.config.grpc_endpoint is not None:
            try:
                await self._start_grpc(self.config.grpc_endpoint)
            except BaseException:
                await self.shutdown(0)
                raise

    async def _start_grpc(self, endpoint: str) -> None:
        from otel_judge.quality.v1 import quality_pb2_grpc

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        quality_pb2_grpc.add_QualityServiceServicer_to_server(_QualityServicer(self), server)  # type: ignore[no-untyped-call]
        try:
            port = server.add_insecure_port(endpoint)
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"quality.api.grpc_endpoint: cannot listen on {endpoint}")
        await server.start()
        self._grpc = server
        self.grpc_port = port

    async def shutdown(self, deadline: float) -> None:
        """Stop both servers (safe before start and twice)."""
        if self._grpc is not None:
            server, self._grpc = self._grpc, None
            await server.stop(grace=max(0.0, min(1.0, deadline - self.settings.clock.monotonic())))
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ------------------------------------------------------------------ HTTP

    async def _http_quality(self, request: web.Request) -> web.Response:
        try:
            query = parse_query(list(request.query.items()), slice_names=self.slice_names, evaluators=self.evaluators)
            return _json(200, await self.quality(query))
        except OtelJudgeError as exc:
            return _json(status_for(exc)[1], {"error": str(exc)})

    async def _http_slices(self, request: web.Request) -> web.Response:
        try:
            unknown = [k for k in request.query if k != "window"]
            if unknown:
                raise MalformedError(f"unknown parameter {unknown[0]!r}: the only one is window")
            return _json(200, {"slices": await self.slices(_window(request.query.get("window"), None))})
        except OtelJudgeError as exc:
            return _json(status_for(exc)[1], {"error": str(exc)})


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class _QualityServicer:
    """``otel_judge.quality.v1.QualityService`` over the same answers as the HTTP API."""

    def __init__(self, api: QualityApi) -> None:
        self.api = api

    async def GetQuality(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        from google.protobuf import struct_pb2

        from otel_judge.quality.v1 import quality_pb2

        params: list[tuple[str, str]] = [("evaluator", request.evaluator), *request.slices.items()]
        if request.score:
            params.append(("score", request.score))
        try:
            if request.HasField("window"):
                seconds = request.window.ToTimedelta().total_seconds()
                if seconds <= 0:
                    raise MalformedError("window: must be > 0")
                params.append(("window", f"{seconds}s"))
            query = parse_query(params, slice_names=self.api.slice_names, evaluators=self.api.evaluators)
            answer = await self.api.quality(query)
        except OtelJudgeError as exc:
            await context.abort(status_for(exc)[0], str(exc))
            raise  # abort raises; this line is for type checkers
        reply = quality_pb2.GetQualityResponse(
            evaluator=answer["evaluator"],
            score=answer["score"],
            slices=answer["slice"],
            start_time_unix_nano=answer["start_time_unix_nano"],
            end_time_unix_nano=answer["end_time_unix_nano"],
            n=answer["n"],
            confidence=answer["confidence"],
            n_effective=answer["n_effective"],
            statuses=answer["statuses"],
        )
        for name in ("mean", "ci_low", "ci_high", "pass_rate"):
            if answer[name] is not None:
                setattr(reply, name, answer[name])
        scale = answer["scale"] or {}
        if scale.get("low") is not None:
            reply.scale_low = scale["low"]
        if scale.get("high") is not None:
            reply.scale_high = scale["high"]
        if answer["regression"] is not None:
            regression = struct_pb2.Struct()
            regression.update(json.loads(json.dumps(answer["regression"], default=str)))
            reply.regression.CopyFrom(regression)
        return reply

    async def ListSlices(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        from otel_judge.quality.v1 import quality_pb2

        try:
            window = None
            if request.HasField("window"):
                window = request.window.ToTimedelta().total_seconds()
                if window <= 0:
                    raise MalformedError("window: must be > 0")
            values = await self.api.slices(window)
        except OtelJudgeError as exc:
            await context.abort(status_for(exc)[0], str(exc))
            raise
        reply = quality_pb2.ListSlicesResponse()
        for name, vals in values.items():
            reply.slices[name].values.extend(vals)
        return reply
