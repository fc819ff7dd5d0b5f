"""Our error kinds, and the one table that maps them to gRPC codes and HTTP statuses.

Foreign errors (litellm, grpc, aiohttp) are translated into these once, at the boundary where the
foreign library is called; everything inside otel-judge only sees these.
"""

from __future__ import annotations

from typing import Final

import grpc


class OtelJudgeError(Exception):
    """Base class of every error otel-judge raises on purpose."""


class ConfigError(OtelJudgeError):
    """The configuration is invalid. ``problems`` lists every problem as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class MalformedError(OtelJudgeError):
    """A request could not be decoded. Never retried by the sender."""


class OverloadedError(OtelJudgeError):
    """A bounded queue is full; the sender should retry later (``retry_after`` seconds)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetryableError(OtelJudgeError):
    """A transient failure (timeout, 429, 5xx, connection). ``retry_after`` is the server's hint."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnauthenticatedError(OtelJudgeError):
    """A sender presented no valid credential; nothing of its request was read or processed.

    The message never contains the credential (or any part of it)."""


class RequestTooLargeError(OtelJudgeError):
    """A request body exceeds the configured maximum (counted after decompression)."""


class PermanentError(OtelJudgeError):
    """A failure that retrying will not fix (auth, bad request, unknown model)."""


class JudgeTimeoutError(RetryableError):
    """A judge call did not answer within its deadline."""


class ParseError(OtelJudgeError):
    """The judge answered, but not with a valid result (non-numeric, out of range, bad JSON)."""


# Error kind -> (gRPC status code, HTTP status). The only place these mappings live.
STATUS_TABLE: Final[dict[type[OtelJudgeError], tuple[grpc.StatusCode, int]]] = {
    MalformedError: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    OverloadedError: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    RetryableError: (grpc.StatusCode.UNAVAILABLE, 503),
    PermanentError: (grpc.StatusCode.INTERNAL, 500),
    UnauthenticatedError: (grpc.StatusCode.UNAUTHENTICATED, 401),
    RequestTooLargeError: (grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, int]:
    """The gRPC code and HTTP status to answer a sender with for ``error``."""
    for kind, status in STATUS_TABLE.items():
        if isinstance(error, kind):
            return status
    return grpc.StatusCode.INTERNAL, 500


# gRPC codes on which an OTLP exporter retries (OTLP spec, "Failures").
RETRYABLE_GRPC_CODES: Final = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
