"""Shared by the bench's servers: run until the orchestrator sends SIGTERM, then exit with code 0."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["until_terminated"]


async def until_terminated() -> None:
    """Return when the process receives SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
