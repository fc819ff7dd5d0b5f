"""Builds the pipeline from the config, in one place: receiver → judging stage → exporter(s)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_judge.auth import Authenticator
from otel_judge.bias import same_family
from otel_judge.component import Settings, run_every
from otel_judge.config import Config, JudgeModelConfig
from otel_judge.evaluators import Evaluator, build_evaluator
from otel_judge.evaluators.checks import CHECK_TYPES
from otel_judge.exporter import (
    DebugExporter,
    Exporter,
    FanOutExporter,
    FileExporter,
    OtlpGrpcExporter,
    OtlpHttpExporter,
)
from otel_judge.health import HealthServer, Readiness, exporter_readiness
from otel_judge.judge import Judge, JudgeRouter, build_judge_client
from otel_judge.logs import StateWatcher
from otel_judge.model import EvaluationSink
from otel_judge.outputs import Outputs
from otel_judge.pool import JudgePool
from otel_judge.processor import JudgeProcessor
from otel_judge.reader import GenAIReader
from otel_judge.receiver import OtlpGrpcReceiver
from otel_judge.receiver_http import OtlpHttpReceiver
from otel_judge.sampling import Sampler
from otel_judge.storage import PersistentIntake, PersistentQueue

if TYPE_CHECKING:  # the quality side (SQLAlchemy, the API) is imported only when a store is configured
    from otel_judge.quality.api import QualityApi
    from otel_judge.quality.detector import RegressionDetector
    from otel_judge.quality.store import QualityStore, StoreSink

__all__ = ["Pipeline"]


def build_exporter(config: Config, settings: Settings) -> Exporter:
    exporters: list[Exporter] = []
    if config.exporters.otlp is not None:
        exporters.append(OtlpGrpcExporter(config.exporters.otlp, settings))
    if config.exporters.otlphttp is not None:
        exporters.append(OtlpHttpExporter(config.exporters.otlphttp, settings))
    if config.exporters.file is not None:
        exporters.append(FileExporter(config.exporters.file.path, settings))
    if config.exporters.debug is not None:
        exporters.append(DebugExporter(config.exporters.debug.verbosity, settings))
    return exporters[0] if len(exporters) == 1 else FanOutExporter(exporters)


class Pipeline:
    """Everything ``otel-judge serve`` runs. ``judge`` may be injected (tests, custom clients)."""

    def __init__(
        self,
        config: Config,
        settings: Settings | None = None,
        *,
        judge: Judge | None = None,
        exporter: Exporter | None = None,
        sinks: Sequence[EvaluationSink] = (),
    ) -> None:
        """``exporter`` replaces the configured exporters and ``sinks`` are added to the evaluation sinks
        (``otel-judge replay`` discards the spans and collects the judgments)."""
        self.config = config
        self.settings = settings or Settings()
        self.exporter = exporter if exporter is not None else build_exporter(config, self.settings)
        self.judge: Judge | None = judge
        self._panel_judges: list[JudgeRouter] = []  # closed at shutdown (their HTTP sessions)
        if self.judge is None and config.judge.model is not None:
            self.judge = JudgeRouter(config.judge, self.settings)
        # Deterministic checks need no judge; LLM evaluators run only when a judge model is configured.
        self.evaluators: Sequence[Evaluator] = [
            build_evaluator(e, self.judge, self._panel_judge)
            for e in config.evaluators
            if self.judge is not None or e.type in CHECK_TYPES
        ]
        # Quality over time: every judgment goes to the evaluation store through a sink of the judging stage.
        self.sinks: list[EvaluationSink] = list(sinks)  # every completed judgment is recorded to each
        self.store: QualityStore | None = None
        self.store_sink: StoreSink | None = None
        if config.store is not None:
            from otel_judge.quality.store import QualityStore, StoreSink

            self.store = QualityStore(config.store, self.settings)
            self.store_sink = StoreSink(self.store, self.settings)
            self.sinks.append(self.store_sink)
        # Log records, late results and metrics of each judgment (outputs.*), and the periodic metrics export.
        self.outputs = Outputs(config.outputs, self.exporter, self.settings)
        self.sinks.extend(self.outputs.sinks)
        pool = None
        if self.evaluators:
            pool = JudgePool(
                max_concurrency=config.judge.max_concurrency,
                queue_size=config.judge.queue_size,
                # One judgment (retries and fallbacks included) may take as long as its span waits for it;
                # each call has its own deadline (judge.timeout) inside.
                timeout=max(config.judge.max_hold, config.judge.timeout),
                settings=self.settings,
                cache_ttl=config.judge.cache.ttl,
                cache_size=config.judge.cache.max_entries,
                # After a restart, a re-delivered span's judgment is found in the store instead of made again.
                prior=functools.partial(self.store.lookup, max_age=config.judge.cache.ttl) if self.store else None,
            )
        alternative: list[Evaluator] = []
        same = config.judge.same_family
        if self.evaluators and same.action == "alternative" and same.alternative is not None:
            alt_judge = self._panel_judge(same.alternative)
            alternative = [build_evaluator(e, alt_judge, self._panel_judge) for e in config.evaluators]
            alternative = [a for a in alternative if a.name in {e.name for e in self.evaluators}]
        self.processor = JudgeProcessor(
            self.exporter,
            sampler=Sampler.from_config(config.sampling.policies, self.settings.clock, config.sampling.loop_guard),
            reader=GenAIReader.from_config(config.reader),
            pool=pool,
            evaluators=self.evaluators,
            max_hold=config.judge.max_hold,
            sampling=config.sampling,
            alternative_evaluators=alternative,
            judge_model=getattr(self.judge, "model", None),
            content_cache=config.judge.cache.by_content,
            redact=config.judge.redact_detectors if config.judge.redact_pii else None,
            outputs=config.outputs,
            sinks=self.sinks,
            slices=config.quality.slices,
            settings=self.settings,
        )
        self.watcher = StateWatcher(self.settings, config.judge.queue_size if pool is not None else None)
        self._housekeeping: asyncio.Task[None] | None = None
        # Persistent mode: receivers hand requests to a stage that writes them durably before the judging stage.
        self.storage = PersistentQueue(config.storage, self.settings) if config.storage is not None else None
        self.intake: JudgeProcessor | PersistentIntake = (
            PersistentIntake(self.processor, self.storage, self.exporter.ensure_capacity, self.settings)
            if self.storage is not None
            else self.processor
        )
        otlp = config.receivers.otlp
        self.auth = Authenticator(otlp.auth, self.settings) if otlp.auth is not None else None
        grpc_config = otlp.protocols.grpc
        self.grpc_receiver = (
            OtlpGrpcReceiver(grpc_config, self.intake, self.intake, self.settings, self.auth, readiness=self.readiness)
            if grpc_config
            else None
        )
        http_config = otlp.protocols.http
        self.http_receiver = (
            OtlpHttpReceiver(http_config, self.intake, self.intake, self.settings, self.auth) if http_config else None
        )
        health = config.service.health
        self.health_server = HealthServer(health, self.readiness, self.settings) if health else None
        self.detector: RegressionDetector | None = None
        self.quality_api: QualityApi | None = None
        if self.store is not None:
            from otel_judge.quality.api import QualityApi
            from otel_judge.quality.detector import build_quality

            self.detector = build_quality(config, self.settings, self.store, self.exporter)
            if config.quality.api is not None:
                self.quality_api = QualityApi(
                    config.quality.api,
                    self.store,
                    self.settings,
                    slice_names=list(config.quality.slices),
                    evaluators=[e.name for e in config.evaluators],
                    regression_for=self.detector.regression_for,
                )
        self._running = False

    def same_family_warnings(self) -> list[str]:
        """Models the config itself names (in sampling policies on *model* keys) that share the judge's
        family: preference leakage is visible before any span arrives."""
        judge = getattr(self.judge, "model", None)
        found: list[str] = []

        def visit(policy: Any) -> None:
            spec = getattr(policy, policy.type, None) if isinstance(getattr(policy, "type", None), str) else None
            key = getattr(spec, "key", "") or ""
            values = list(getattr(spec, "values", None) or []) + list((getattr(spec, "rates", None) or {}).keys())
            if "model" in key:
                found.extend(v for v in values if same_family(judge, v))
            for sub in ("and_sub_policy", "drop_sub_policy", "composite_sub_policy"):
                for child in getattr(getattr(policy, "and_", None) or spec, sub, None) or []:
                    visit(child)

        for policy in self.config.sampling.policies:
            visit(policy)
        return sorted(set(found))

    def _panel_judge(self, target: JudgeModelConfig) -> Judge:
        """A panel member: its own model behind the same retries, breaker and limits as the main judge."""
        client = build_judge_client(self.config.judge, self.settings, target, path="evaluators")
        router = JudgeRouter(self.config.judge, self.settings, [client])
        self._panel_judges.append(router)
        return router

    @property
    def grpc_port(self) -> int | None:
        return self.grpc_receiver.port if self.grpc_receiver else None

    @property
    def http_port(self) -> int | None:
        return self.http_receiver.port if self.http_receiver else None

    @property
    def health_port(self) -> int | None:
        return self.health_server.port if self.health_server else None

    def readiness(self) -> Readiness:
        """Ready when started (and not shutting down) and every exporter can make progress."""
        if not self._running:
            return Readiness(False, "otel-judge is starting or shutting down")
        ok, why = exporter_readiness(self.exporter)
        if ok and self.storage is not None:
            ok, why = self.storage.ready()
        return Readiness(ok, why)

    async def start(self, *, tick_interval: float | None = 0.25) -> None:
        """Start from the back: exporters first, receivers last. ``tick_interval=None`` leaves
        ``processor.tick()`` to the caller (tests drive it with a fake clock). The health server
        starts first, so liveness answers (and readiness says "starting") during start-up."""
        if self.health_server is not None:
            await self.health_server.start()
        if self.storage is not None:  # first: a directory in use or unreadable fails the start
            await self.storage.start()
        await self.exporter.start()
        await self.outputs.start()
        if self.store is not None:  # connects and migrates: an unreachable database fails the start
            await self.store.start()
        if self.store_sink is not None:
            await self.store_sink.start()
        if self.judge is not None and hasattr(self.judge, "start"):
            await self.judge.start()
        await self.processor.start(tick_interval)
        if self.detector is not None:
            await self.detector.start()
        if self.quality_api is not None:
            await self.quality_api.start()
        if isinstance(self.intake, PersistentIntake):  # what the last run left goes before new intake
            await self.intake.replay()
        if self.grpc_receiver is not None:
            await self.grpc_receiver.start()
        if self.http_receiver is not None:
            await self.http_receiver.start()
        if tick_interval and self._housekeeping is None:
            self._housekeeping = asyncio.create_task(
                run_every(tick_interval, self.tick, self.settings.logger, "pipeline tick"), name="pipeline-tick"
            )
        self._running = True

    async def tick(self) -> None:
        """Housekeeping besides the judging stage's own tick: the periodic metrics export and the
        state-change log lines (judge circuit, judge queue). A task calls it every ``tick_interval``;
        tests call it after advancing a fake clock."""
        await self.outputs.tick()
        self.watcher.check()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop intake, let judgments finish, export what is held, flush; all within ``grace``."""
        grace = self.config.service.shutdown_grace if grace is None else grace
        now = self.settings.clock.monotonic()
        deadline = now + grace
        # Judgments may use the grace only up to a reserve kept for flushing what is then released.
        judging_deadline = deadline - min(grace / 2, 5.0)
        self._running = False  # readiness goes NOT_SERVING / 503 before intake stops
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self.grpc_receiver is not None:
            await self.grpc_receiver.shutdown(min(judging_deadline, now + 1.0))
        if self.http_receiver is not None:
            await self.http_receiver.shutdown(min(judging_deadline, now + 1.0))
        await self.processor.shutdown(judging_deadline)
        for judge in (self.judge, *self._panel_judges):  # judgments are over: close the judges' connections
            if isinstance(judge, JudgeRouter):
                await judge.shutdown(deadline)
        if self.store_sink is not None:  # after the judging stage: its last judgments are written
            await self.store_sink.shutdown(deadline)
        if self.detector is not None:  # before the exporter: its otlp alert sink hands records to it
            await self.detector.shutdown(deadline)
        await self.outputs.shutdown(deadline)  # after the judging stage, before the exporter: a last flush
        await self.exporter.shutdown(deadline)
        if self.quality_api is not None:
            await self.quality_api.shutdown(deadline)
        if self.store is not None:
            await self.store.shutdown(deadline)
        if self.storage is not None:  # after the exporter: what it did not send stays on disk
            await self.storage.shutdown(deadline)
        if self.health_server is not None:
            await self.health_server.shutdown(deadline)

    def describe(self) -> str:
        """The one-line start-up message: what is on, what is off and how to turn it on."""
        parts = []
        protocols = self.config.receivers.otlp.protocols
        for name, server in (("gRPC", protocols.grpc), ("HTTP", protocols.http)):
            if server is not None:
                tls = "" if server.tls is None else " (mTLS)" if server.tls.client_ca_file else " (TLS)"
                parts.append(f"OTLP/{name} on {server.endpoint}{tls}")
        parts.append(f"auth ON ({self.auth.describe()})" if self.auth is not None else "auth OFF")
        if self.config.service.health is not None:
            metrics = ", /metrics" if self.config.service.health.metrics else ""
            parts.append(f"health on {self.config.service.health.endpoint} (/healthz, /readyz{metrics})")
        if self.evaluators:
            names = ", ".join(f"{e.name} ({type(e).__name__})" for e in self.evaluators)
            policies = ", ".join(p.name for p in self.config.sampling.policies)
            judge = getattr(self.judge, "model", None) or "no judge model (checks only)"
            parts.append(f"judging ON with {judge}: {names}; sampling: {policies}")
        else:
            parts.append(
                "judging OFF (set OTEL_JUDGE_MODEL=openai/gpt-4o-mini and OPENAI_API_KEY, "
                "or judge.model in a config file)"
            )
        outs = []
        exporters = self.config.exporters
        if exporters.otlp is not None:
            outs.append(f"otlp {exporters.otlp.endpoint}")
        if exporters.otlphttp is not None:
            outs.append(f"otlphttp {exporters.otlphttp.traces_endpoint or exporters.otlphttp.endpoint}")
        if exporters.file is not None:
            outs.append(f"file {exporters.file.path}")
        if exporters.debug is not None:
            outs.append("console")
        parts.append("exporting to " + ", ".join(outs))
        if self.storage is not None:
            parts.append(f"persistent queue in {self.storage.directory}")
        if self.store is not None:
            parts.append(f"evaluation store {self.store.describe()}")
        if self.quality_api is not None:
            api = self.quality_api.config
            grpc_api = f" (gRPC {api.grpc_endpoint})" if api.grpc_endpoint else ""
            parts.append(f"quality API on {api.endpoint}{grpc_api}")
        parts.append(
            "GenAI content capture must be on in your instrumentation "
            "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY)"
        )
        return "otel-judge: " + "; ".join(parts)
