"""The ``otel-judge`` command. The only module that exits the process.

otel-judge serve [--config FILE]   run until SIGTERM/SIGINT, then shut down gracefully
otel-judge validate FILE...        list every problem of each config under its YAML path
otel-judge inspect FILE... [--all] what otel-judge reads from OTLP files (protobuf or OTLP/JSON)
otel-judge replay FILE...          judge archived OTLP files offline, write the store, print a summary
otel-judge report [--html FILE]    quality per slice from the store: table (and plots with alerts)
otel-judge calibrate LABELS        agreement of the judge with human labels, and bias probes
otel-judge --version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_judge import __version__
from otel_judge.config import Config, default_config, load_config
from otel_judge.errors import ConfigError

if TYPE_CHECKING:
    from otel_judge.pipeline import Pipeline

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-judge", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"otel-judge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="receive OTLP, judge GenAI spans, export everything")
    serve.add_argument("--config", "-c", help="YAML config file; without it, the embedded default")
    validate = sub.add_parser("validate", help="check config files and list every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    inspect = sub.add_parser("inspect", help="show, as JSON, the model calls otel-judge reads from OTLP files")
    inspect.add_argument("files", nargs="+", metavar="FILE", help="OTLP protobuf or OTLP/JSON (traces and logs)")
    inspect.add_argument("--all", action="store_true", help="also list the GenAI spans not judged, and why")
    inspect.add_argument("--config", "-c", help="read with this config's reader settings")
    _replay_parser(sub)
    _quality_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "inspect":
        return _inspect(args.files, args.all, args.config)
    if args.command == "replay":
        return _replay(args)
    if args.command == "report":
        return _report(args)
    if args.command == "calibrate":
        return _calibrate(args)
    return _serve(args.config)


def _validate(files: Sequence[str]) -> int:
    status = 0
    for path in files:
        try:
            _, warnings = load_config(path)
        except ConfigError as exc:
            print(f"{path}: invalid", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            status = EXIT_CONFIG
            continue
        print(f"{path}: OK")
        for warning in warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    return status


def _inspect(files: Sequence[str], include_skipped: bool, config_path: str | None) -> int:
    from otel_judge.config import ReaderConfig
    from otel_judge.inspector import InspectError, inspect_requests, load_files
    from otel_judge.reader import GenAIReader

    try:
        reader = GenAIReader.from_config(load_config(config_path)[0].reader if config_path else ReaderConfig())
        traces, logs = load_files(files)
    except ConfigError as exc:
        print(f"otel-judge inspect: {config_path} is invalid:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return EXIT_CONFIG
    except InspectError as exc:
        print(f"otel-judge inspect: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    entries = inspect_requests(traces, logs, reader=reader, include_skipped=include_skipped)
    print(json.dumps(entries, indent=2, ensure_ascii=False))
    return 0


def _setup_logging(config: Config) -> logging.Logger:
    """Structured logs on stderr (service.logs), with the config's secrets redacted from every line."""
    from otel_judge.logs import config_secrets, configure_logging

    return configure_logging(config.service.logs, secrets=config_secrets(config))


def _serve(config_path: str | None) -> int:
    try:
        if config_path:
            config, warnings = load_config(config_path)
        else:
            config, warnings = default_config(os.environ), []
    except ConfigError as exc:
        print(f"otel-judge: {config_path or 'default config'} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        logger = _setup_logging(config)
    except ConfigError as exc:
        print(f"otel-judge: {'; '.join(exc.problems)}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in warnings:
        logger.warning("config: %s", warning)
    try:
        asyncio.run(_run(config, logger))
    except ConfigError as exc:
        print(f"otel-judge: {config_path or 'default config'} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"otel-judge: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def _start_unless_stopped(pipeline: Pipeline, stop: asyncio.Event, logger: logging.Logger) -> bool:
    """Start ``pipeline``; False when a signal came first (start-up can be long: the persistent queue
    is replayed before the receivers open, and waits for room while the backend is down): the start
    stops where it is and the pipeline shuts down gracefully, what was not sent staying on disk."""
    starting = asyncio.ensure_future(pipeline.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up error is raised here
            return True
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    except BaseException:
        await pipeline.shutdown(0)
        raise
    finally:
        stopping.cancel()
    logger.info("signalled while starting: shutting down (grace %gs)", pipeline.config.service.shutdown_grace)
    await pipeline.shutdown()
    return False


async def _run(config: Config, logger: logging.Logger) -> None:
    from otel_judge.component import Settings
    from otel_judge.logs import event
    from otel_judge.pipeline import Pipeline

    pipeline = Pipeline(config, Settings(logger=logger, include_content=config.service.logs.include_content))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_unless_stopped(pipeline, stop, logger):
        return
    # What start-up allocated (modules, config, ~65,000 objects) lives as long as the process: out of
    # the garbage collector's reach, a full collection no longer pauses the receive path ~30 ms for it.
    gc.freeze()
    print(pipeline.describe(), file=sys.stderr, flush=True)
    logger.info("started", extra=event("otel_judge.started"))
    for model in pipeline.same_family_warnings():
        logger.warning(
            "judge %s is of the same family as %s, which your sampling policies name: its scores may be biased "
            "(preference leakage); consider judge.same_family.action: alternative",
            getattr(pipeline.judge, "model", "?"),
            model,
        )
    await stop.wait()
    logger.info("shutting down (grace %gs)", config.service.shutdown_grace, extra=event("otel_judge.stopping"))
    await pipeline.shutdown()
    logger.info("stopped", extra=event("otel_judge.stopped"))


# --------------------------------------------------------------------------- replay

EXIT_FAILED_UNDER = 1


def _replay_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="judge archived OTLP files with the configured evaluators, write the store, print a summary",
        description="Judge archived OTLP (protobuf requests, or OTLP/JSON lines as the Collector's file exporter "
        "writes them; traces and their logs) with the configured judge and evaluators, exactly as serve would. "
        "Every model call is judged unless --sampled. Judgments go to the evaluation store (store.url or --store).",
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="OTLP protobuf or OTLP/JSON (traces and logs)")
    replay.add_argument("--config", "-c", help="YAML config file; without it, the embedded default")
    replay.add_argument("--store", metavar="URL", help="evaluation store URL, replacing store.url")
    replay.add_argument("--sampled", action="store_true", help="apply the config's sampling policies")
    replay.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="[EVALUATOR=]SCORE",
        help="exit 1 when an evaluator's mean score (all replayed traffic) is below SCORE, or when it judged "
        "nothing; repeatable; without EVALUATOR= it applies to every evaluator",
    )
    replay.add_argument("--by", help="comma-separated slice names to group the table by (default: every slice)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _fail_under(values: Sequence[str]) -> dict[str | None, float]:
    """``["70", "tone=0.8"]`` -> ``{None: 70.0, "tone": 0.8}``; ValueError names the bad one."""
    out: dict[str | None, float] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        try:
            out[name if sep else None] = float(number)
        except ValueError:
            raise ValueError(f"--fail-under {value!r}: expected SCORE or EVALUATOR=SCORE") from None
    return out


def _replay(args: argparse.Namespace) -> int:
    try:
        thresholds = _fail_under(args.fail_under)
    except ValueError as exc:
        print(f"otel-judge replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from otel_judge.component import Settings
    from otel_judge.inspector import InspectError, load_files
    from otel_judge.quality.replay import ReplayError, replay, replay_config
    from otel_judge.quality.report import render_table
    from otel_judge.quality.store import engine_url

    try:
        if args.config:
            config, warnings = load_config(args.config)
        else:
            config, warnings = default_config(os.environ), []
        config = replay_config(config, sampled=args.sampled, store_url=args.store)
    except ConfigError as exc:
        print(f"otel-judge replay: {args.config or 'default config'} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    unknown = [name for name in thresholds if name is not None and name not in {e.name for e in config.evaluators}]
    if unknown:
        print(f"otel-judge replay: --fail-under: no evaluator {unknown[0]!r} in the config", file=sys.stderr)
        return EXIT_CONFIG
    try:
        traces, logs = load_files(args.files)
        logger = _setup_logging(config)
    except InspectError as exc:
        print(f"otel-judge replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"otel-judge replay: {'; '.join(exc.problems)}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in warnings:
        logger.warning("config: %s", warning)
    bar = _ProgressBar(enabled=not args.no_progress)
    settings = Settings(logger=logger, include_content=config.service.logs.include_content)
    try:
        result = asyncio.run(replay(config, traces, logs, settings=settings, progress=bar.update, on_start=bar.start))
    except ReplayError as exc:
        print(f"otel-judge replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"otel-judge replay: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    by = [b.strip() for b in args.by.split(",") if b.strip()] if args.by else None
    print(render_table(result.rows, by=by), end="")
    for evaluator in result.evaluators:
        overall = result.overall(evaluator)
        if overall.mean is not None:
            ci = "" if overall.ci_low is None else f", 95% CI [{overall.ci_low:.4g}, {overall.ci_high:.4g}]"
            print(f"{evaluator}: n={overall.n}, mean {overall.mean:.4g}{ci} over everything replayed")
    statuses = ", ".join(f"{status} {count}" for status, count in sorted(result.statuses.items()))
    print(f"model-call spans: {statuses or 'none found'}")
    where = f"written to the store {engine_url(config.store.url).render_as_string()}" if config.store else "no store"
    counts = f"{result.traces} trace(s), {result.spans} span(s), {len(result.records)} judgment(s)"
    print(f"{counts}; {where}", file=sys.stderr)
    failed = 0
    for evaluator in [e.name for e in config.evaluators]:
        threshold = thresholds.get(evaluator, thresholds.get(None))
        if threshold is None:
            continue
        overall = result.overall(evaluator)
        if overall.mean is None or overall.mean < threshold:
            mean = "nothing judged" if overall.mean is None else f"mean {overall.mean:.4g} (n={overall.n})"
            print(f"otel-judge replay: {evaluator}: {mean} is below --fail-under {threshold:g}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED_UNDER if failed else 0


class _ProgressBar:
    """tqdm on a terminal (it is installed with litellm's dependencies); otherwise silent."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def start(self, total: int) -> None:
        if not self.enabled or not sys.stderr.isatty():
            return
        try:
            tqdm = importlib.import_module("tqdm").tqdm  # untyped, and optional
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="trace", desc="replay", file=sys.stderr)

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --------------------------------------------------------------------------- report and calibrate


def _quality_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="quality per slice and evaluator from the evaluation store",
        description="Per evaluator and slice: n, weighted mean, 95% CI, pass rate and trend (the last --window "
        "against the one before). --html adds plots of the score over time with the regression detector's alerts.",
    )
    report.add_argument("--config", "-c", help="YAML config file (its store.url is read); default: the embedded one")
    report.add_argument("--window", default="24h", help="the window of the estimates, e.g. 1h, 24h, 168h (default 24h)")
    report.add_argument("--evaluator", help="only this evaluator")
    report.add_argument("--by", help="comma-separated slice names to group by (default: every configured slice)")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with plots")
    calibrate = sub.add_parser(
        "calibrate",
        help="agreement of the judge with human labels (correlations, kappa, MAE) and bias probes",
        description="LABELS is CSV or JSON lines: human_score and/or human_label, with trace_id+span_id (matched "
        "against the store) or prompt+completion (judged now with the configured evaluator).",
    )
    calibrate.add_argument("labels", metavar="LABELS", help="CSV (with a header) or JSON-lines label file")
    calibrate.add_argument("--config", "-c", help="YAML config file; default: the embedded one")
    calibrate.add_argument("--evaluator", help="the score key to compare (needed when there are several)")
    calibrate.add_argument("--human-scale", metavar="LOW,HIGH", help="scale of the human scores (default: the judge's)")
    calibrate.add_argument("--bins", type=int, default=5, help="bins of the scale for kappa on scores (default 5)")
    calibrate.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    calibrate.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")


def _config_or_default(command: str, path: str | None) -> Config | None:
    try:
        if path:
            config, _ = load_config(path)
            return config
        return default_config(os.environ)
    except ConfigError as exc:
        print(f"otel-judge {command}: {path or 'default config'} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _report(args: argparse.Namespace) -> int:
    from otel_judge.config import parse_duration
    from otel_judge.quality.report import run_report

    config = _config_or_default("report", args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        window = parse_duration(args.window)
        if window <= 0:
            raise ValueError("must be > 0")
    except ValueError as exc:
        print(f"otel-judge report: --window: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    by = [b.strip() for b in args.by.split(",") if b.strip()] if args.by else None
    try:
        table = run_report(config, window=window, evaluator=args.evaluator, by=by, html_path=args.html)
    except ConfigError as exc:
        print(f"otel-judge report: {'; '.join(exc.problems)}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"otel-judge report: {exc}", file=sys.stderr)
        return 1
    print(table, end="")
    if args.html:
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from otel_judge.quality.calibrate import LabelError, render_calibration, run_calibrate

    config = _config_or_default("calibrate", args.config)
    if config is None:
        return EXIT_CONFIG
    scale: tuple[float, float] | None = None
    if args.human_scale:
        try:
            low, high = (float(v) for v in args.human_scale.split(","))
        except ValueError:
            print("otel-judge calibrate: --human-scale: write it as LOW,HIGH (e.g. 1,5)", file=sys.stderr)
            return EXIT_CONFIG
        scale = (low, high)
    try:
        result = run_calibrate(
            config, args.labels, evaluator=args.evaluator, human_scale=scale, bins=args.bins, html_path=args.html
        )
    except (LabelError, ConfigError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        print(f"otel-judge calibrate: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"otel-judge calibrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_calibration(result), end="")
    return 0
