"""Builds the pipeline from the config, in one place: receiver → judging stage → exporter(s)."""

from __future__ import annotations

from collections.abc import Sequence

from otel_judge.component import Settings
from otel_judge.config import Config
from otel_judge.evaluators import Evaluator, build_evaluator
from otel_judge.exporter import DebugExporter, Exporter, FanOutExporter, FileExporter, OtlpGrpcExporter
from otel_judge.judge import Judge, JudgeRouter
from otel_judge.pool import JudgePool
from otel_judge.processor import JudgeProcessor
from otel_judge.reader import GenAIReader
from otel_judge.receiver import OtlpGrpcReceiver
from otel_judge.sampling import Sampler

__all__ = ["Pipeline"]


def build_exporter(config: Config, settings: Settings) -> Exporter:
    exporters: list[Exporter] = []
    if config.exporters.otlp is not None:
        exporters.append(OtlpGrpcExporter(config.exporters.otlp, settings))
    if config.exporters.file is not None:
        exporters.append(FileExporter(config.exporters.file.path, settings))
    if config.exporters.debug is not None:
        exporters.append(DebugExporter(config.exporters.debug.verbosity, settings))
    return exporters[0] if len(exporters) == 1 else FanOutExporter(exporters)


class Pipeline:
    """Everything ``otel-judge serve`` runs. ``judge`` may be injected (tests, custom clients)."""

    def __init__(self, config: Config, settings: Settings | None = None, *, judge: Judge | None = None) -> None:
        self.config = config
        self.settings = settings or Settings()
        self.exporter = build_exporter(config, self.settings)
        self.judge: Judge | None = judge
        if self.judge is None and config.judge.model is not None:
            self.judge = JudgeRouter(config.judge, self.settings)
        self.evaluators: Sequence[Evaluator] = (
            [build_evaluator(e, self.judge) for e in config.evaluators] if self.judge is not None else []
        )
        pool = None
        if self.evaluators:
            pool = JudgePool(
                max_concurrency=config.judge.max_concurrency,
                queue_size=config.judge.queue_size,
                timeout=config.judge.timeout,
                settings=self.settings,
            )
        self.processor = JudgeProcessor(
            self.exporter,
            sampler=Sampler.from_config(config.sampling.policies, self.settings.clock, config.sampling.loop_guard),
            reader=GenAIReader.from_config(config.reader),
            pool=pool,
            evaluators=self.evaluators,
            max_hold=config.judge.max_hold,
            sampling=config.sampling,
            settings=self.settings,
        )
        grpc_config = config.receivers.otlp.protocols.grpc
        self.grpc_receiver = (
            OtlpGrpcReceiver(grpc_config, self.processor, self.processor, self.settings) if grpc_config else None
        )

    @property
    def grpc_port(self) -> int | None:
        return self.grpc_receiver.port if self.grpc_receiver else None

    async def start(self, *, tick_interval: float | None = 0.25) -> None:
        """Start from the back: exporters first, receivers last. ``tick_interval=None`` leaves
        ``processor.tick()`` to the caller (tests drive it with a fake clock)."""
        await self.exporter.start()
        if self.judge is not None and hasattr(self.judge, "start"):
            await self.judge.start()
        await self.processor.start(tick_interval)
        if self.grpc_receiver is not None:
            await self.grpc_receiver.start()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop intake, let judgments finish, export what is held, flush; all within ``grace``."""
        grace = self.config.service.shutdown_grace if grace is None else grace
        now = self.settings.clock.monotonic()
        deadline = now + grace
        # Judgments may use the grace only up to a reserve kept for flushing what is then released.
        judging_deadline = deadline - min(grace / 2, 5.0)
        if self.grpc_receiver is not None:
            await self.grpc_receiver.shutdown(min(judging_deadline, now + 1.0))
        await self.processor.shutdown(judging_deadline)
        await self.exporter.shutdown(deadline)

    def describe(self) -> str:
        """The one-line start-up message: what is on, what is off and how to turn it on."""
        parts = []
        if self.grpc_receiver is not None:
            parts.append(f"OTLP/gRPC on {self.config.receivers.otlp.protocols.grpc.endpoint}")  # type: ignore[union-attr]
        if self.evaluators:
            names = ", ".join(f"{e.name} ({type(e).__name__})" for e in self.evaluators)
            policies = ", ".join(p.name for p in self.config.sampling.policies)
            parts.append(f"judging ON with {getattr(self.judge, 'model', '?')}: {names}; sampling: {policies}")
        else:
            parts.append(
                "judging OFF (set OTEL_JUDGE_MODEL=openai/gpt-4o-mini and OPENAI_API_KEY, "
                "or judge.model in a config file)"
            )
        outs = []
        exporters = self.config.exporters
        if exporters.otlp is not None:
            outs.append(f"otlp {exporters.otlp.endpoint}")
        if exporters.file is not None:
            outs.append(f"file {exporters.file.path}")
        if exporters.debug is not None:
            outs.append("console")
        parts.append("exporting to " + ", ".join(outs))
        parts.append(
            "GenAI content capture must be on in your instrumentation "
            "(e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY)"
        )
        return "otel-judge: " + "; ".join(parts)
