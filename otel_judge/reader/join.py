"""Joining content log records to their spans, and finding nested spans that carry one call.

Used by the judging stage on a trace's held spans at decision time, and by ``otel-judge inspect``
on whole files, so both see exactly the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge.model import Exchange
from otel_judge.reader.base import ContentReader, SpanView


class CallSpan(Protocol):
    """A span classified as a model call, with the reader that recognised it."""

    @property
    def span(self) -> Span: ...

    @property
    def reader(self) -> ContentReader: ...


def join_logs(
    calls: Sequence[CallSpan], logs: Mapping[bytes, list[LogRecord]]
) -> tuple[dict[bytes, list[LogRecord]], Counter[str]]:
    """Content records by the span id of the call they belong to, and counts of how each was joined.

    A record carrying the span id of a call goes to that call. A record carrying another span id
    (some libraries stamp the *parent's* span id when streaming) goes to the one call whose parent
    that span is; when several calls share the parent it is ambiguous and not joined.
    """
    by_span = {bytes(c.span.span_id) for c in calls}
    joined: dict[bytes, list[LogRecord]] = {}
    counts: Counter[str] = Counter()
    for span_id, records in logs.items():
        if span_id in by_span:
            joined.setdefault(span_id, []).extend(records)
            counts["span_id"] += len(records)
            continue
        children = [c for c in calls if bytes(c.span.parent_span_id) == span_id]
        if len(children) == 1:
            joined.setdefault(bytes(children[0].span.span_id), []).extend(records)
            counts["parent_span_id"] += len(records)
        else:
            counts["ambiguous" if children else "no_span"] += len(records)
    return joined, counts


def same_call(inner: Exchange, outer: Exchange) -> bool:
    """Whether exchanges read from a span and its parent are one and the same model call."""
    if inner.response_id and outer.response_id:
        return bool(inner.response_id == outer.response_id)
    return bool(inner.completion) and inner.completion == outer.completion and inner.tool_calls == outer.tool_calls


def nested_duplicates(
    calls: Sequence[CallSpan], joined: Mapping[bytes, Sequence[LogRecord]], keep: str = "innermost"
) -> set[bytes]:
    """Span ids of calls not to judge because a parent/child span carries the same call.

    ``keep="innermost"`` (default) judges the model-call span nearest the provider; ``"outermost"``
    the enclosing one.
    """
    by_id = {bytes(c.span.span_id): c for c in calls}
    skip: set[bytes] = set()

    def read(call: CallSpan) -> Exchange | None:
        try:
            return call.reader.read(SpanView(call.span), joined.get(bytes(call.span.span_id), ()))
        except Exception:
            return None

    for call in calls:
        parent = by_id.get(bytes(call.span.parent_span_id))
        if parent is None:
            continue
        inner, outer = read(call), read(parent)
        if inner is not None and outer is not None and same_call(inner, outer):
            skip.add(bytes(parent.span.span_id) if keep == "innermost" else bytes(call.span.span_id))
    return skip
