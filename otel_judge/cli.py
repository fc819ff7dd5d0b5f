"""The ``otel-judge`` command. The only module that exits the process.

otel-judge serve [--config FILE]   run until SIGTERM/SIGINT, then shut down gracefully
otel-judge validate FILE...        list every problem of each config under its YAML path
otel-judge inspect FILE... [--all] what otel-judge reads from OTLP files (protobuf or OTLP/JSON)
otel-judge --version
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from otel_judge import __version__
from otel_judge.config import Config, default_config, load_config
from otel_judge.errors import ConfigError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "inspect":
        return _inspect(args.files, args.all, args.config)
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
    level = os.environ.get("OTEL_JUDGE_LOG_LEVEL", config.service.logs.level).upper()
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger("otel_judge")


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
    logger = _setup_logging(config)
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


async def _run(config: Config, logger: logging.Logger) -> None:
    from otel_judge.component import Settings
    from otel_judge.pipeline import Pipeline

    pipeline = Pipeline(config, Settings(logger=logger, include_content=config.service.logs.include_content))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await pipeline.start()
    except BaseException:
        await pipeline.shutdown(0)
        raise
    print(pipeline.describe(), file=sys.stderr, flush=True)
    for model in pipeline.same_family_warnings():
        logger.warning(
            "judge %s is of the same family as %s, which your sampling policies name: its scores may be biased "
            "(preference leakage); consider judge.same_family.action: alternative",
            getattr(pipeline.judge, "model", "?"),
            model,
        )
    await stop.wait()
    logger.info("shutting down (grace %gs)", config.service.shutdown_grace)
    await pipeline.shutdown()
    logger.info("stopped")
