"""Child processes of the benchmark: start, wait for a ready line, measure, stop.

Every child's stdout and stderr are drained by threads (a child that logs a lot never blocks on a
full pipe); lines are queued for :meth:`Child.wait_line` and the last ones kept for error messages.
Measurements read ``/proc`` through psutil: CPU time (user + system, all threads) and the peak
resident set (``VmHWM``).
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped]  # no stubs in the dev lock; two calls used

__all__ = ["Child", "ChildError", "child_env"]

ROOT = Path(__file__).resolve().parent.parent

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")


class ChildError(RuntimeError):
    """A child did not start, or died; the message ends with its last output lines."""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for children: no proxies (nothing may leave 127.0.0.1), the repo importable."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    # An inherited PYTHONPATH comes first, so another otel_judge tree can be measured.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Child:
    """One child process. Use as a context manager: leaving it stops the process."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.tail: deque[str] = deque(maxlen=40)
        self._lines: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._drain, args=(stream, pipe), daemon=True, name=f"{name}-{stream}").start()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self, stream: str, pipe: IO[str]) -> None:
        for raw in pipe:
            line = raw.rstrip("\n")
            self.tail.append(f"{stream}: {line}")
            self._lines[stream].put(line)
        self._lines[stream].put(None)

    def wait_line(self, prefix: str, *, stream: str = "stdout", timeout: float = 60.0) -> str:
        """The first line (from now on) of ``stream`` that starts with ``prefix``."""
        deadline = time.monotonic() + timeout
        lines = self._lines[stream]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.error(f"no line starting with {prefix!r} within {timeout:g}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise self.error(f"exited (code {self.proc.wait()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line

    def ready_port(self, timeout: float = 60.0) -> int:
        """For the bench's own children, which print ``ready <port>``."""
        return int(self.wait_line("ready ", timeout=timeout).split()[1])

    def error(self, what: str) -> ChildError:
        return ChildError(f"{self.name} (pid {self.pid}) {what}; last output:\n  " + "\n  ".join(self.tail))

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def peak_rss_bytes(self) -> int:
        """``VmHWM`` from ``/proc/<pid>/status``: the most memory the process ever had resident."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise self.error("has no VmHWM in /proc/<pid>/status")

    def wait_idle(self, *, below: float = 0.05, over: float = 0.5, timeout: float = 60.0) -> float:
        """Wait until the process used less than ``below`` of a core during ``over`` seconds.

        otel-judge imports litellm in a background thread after start-up; measuring before that is
        done would charge the import to the first scenario. Returns the seconds waited.
        """
        started = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - started < timeout:
            time.sleep(over)
            if self.proc.poll() is not None:
                raise self.error(f"exited (code {self.proc.returncode}) while settling")
            now = self.cpu_seconds()
            if now - last < below * over:
                return time.monotonic() - started
            last = now
        raise self.error(f"still busy after {timeout:g}s")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.error(f"did not exit within {timeout:g}s") from None

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code. Only this child's pid is
        signalled."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        return self.proc.returncode
