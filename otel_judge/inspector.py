"""``otel-judge inspect``: what otel-judge reads from OTLP files, span by span.

Reads traces and logs from files - binary protobuf (``ExportTraceServiceRequest`` /
``ExportLogsServiceRequest``, told apart automatically) or OTLP/JSON as the Collector's file exporter
writes it (one request per line, hex ids; a single pretty-printed request works too) - and returns
one entry per model call otel-judge would judge, with what the judge would be shown. With
``include_skipped`` it also lists the GenAI spans it would not judge, and why. The same readers and
the same log join as the running pipeline are used, so this is how to debug "why was my span not
judged".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_judge.errors import MalformedError
from otel_judge.otlp import decode_otlp_json, iter_log_records, iter_spans
from otel_judge.reader import Claim, ContentReader, GenAIReader, ReadError, SpanView, is_content_record
from otel_judge.reader.join import join_logs, nested_duplicates

__all__ = ["InspectError", "inspect_requests", "load_files"]


class InspectError(Exception):
    """A file could not be read as OTLP."""


def _looks_like_traces(request: ExportTraceServiceRequest) -> bool:
    spans = [s for _, _, s in iter_spans(request.resource_spans)]
    return bool(spans) and all(len(s.trace_id) == 16 and len(s.span_id) == 8 for s in spans)


def _parse(kind: Any, data: bytes) -> Any:
    try:
        return kind.FromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return None


def _load_binary(path: Path, data: bytes) -> tuple[list[Any], list[Any]]:
    """Tell traces from logs (from metrics) by which message the bytes decode as."""
    traces = _parse(ExportTraceServiceRequest, data)
    if traces is not None and _looks_like_traces(traces):
        return [traces], []
    logs = _parse(ExportLogsServiceRequest, data)
    if logs is not None:
        return [], [logs]
    if _parse(ExportMetricsServiceRequest, data) is not None:
        return [], []  # another signal: nothing to read
    raise InspectError(f"{path}: neither OTLP protobuf (traces, logs) nor OTLP/JSON")


def _load_json_document(data: dict[str, Any], text: str, where: str) -> tuple[list[Any], list[Any]]:
    try:
        if "resourceSpans" in data or "resource_spans" in data:
            return [decode_otlp_json(text, ExportTraceServiceRequest)], []
        if "resourceLogs" in data or "resource_logs" in data:
            return [], [decode_otlp_json(text, ExportLogsServiceRequest)]
    except MalformedError as exc:
        raise InspectError(f"{where}: {exc}") from None
    return [], []  # metrics or another signal: not ours


def load_files(paths: Iterable[str | Path]) -> tuple[list[ExportTraceServiceRequest], list[ExportLogsServiceRequest]]:
    """Every trace and logs request in ``paths``."""
    traces: list[Any] = []
    logs: list[Any] = []
    for raw_path in paths:
        path = Path(raw_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InspectError(f"{path}: cannot read: {exc.strerror}") from None
        stripped = data.lstrip()
        if not stripped.startswith(b"{"):
            found = _load_binary(path, data)
        else:
            text = data.decode("utf-8", errors="replace")
            try:
                document = json.loads(text)
            except ValueError:
                found = ([], [])
                for number, line in enumerate(text.splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        raise InspectError(f"{path}:{number}: not JSON") from None
                    t, lg = _load_json_document(item, line, f"{path}:{number}")
                    found[0].extend(t)
                    found[1].extend(lg)
            else:
                found = _load_json_document(document, text, str(path))
        traces.extend(found[0])
        logs.extend(found[1])
    return traces, logs


@dataclass(slots=True)
class _Call:
    span: Span
    reader: ContentReader
    resource: Any
    scope: Any


def inspect_requests(
    traces: Sequence[ExportTraceServiceRequest],
    logs: Sequence[ExportLogsServiceRequest] = (),
    *,
    reader: GenAIReader | None = None,
    include_skipped: bool = False,
) -> list[dict[str, Any]]:
    """One entry per model call that would be judged (and, with ``include_skipped``, the rest)."""
    reader = reader or GenAIReader()
    calls: dict[bytes, list[_Call]] = defaultdict(list)
    skipped: list[dict[str, Any]] = []
    for request in traces:
        for rs, ss, span in iter_spans(request.resource_spans):
            if not reader.is_candidate(span):
                continue
            found = reader.classify(SpanView(span, rs.resource, ss.scope))
            if found is None:
                continue
            if found[0] is Claim.LLM_CALL:
                calls[bytes(span.trace_id)].append(_Call(span, found[1], rs.resource, ss.scope))
            else:
                skipped.append(_skip(span, found[1].name, "not_a_model_call"))
    records: dict[bytes, dict[bytes, list[LogRecord]]] = defaultdict(lambda: defaultdict(list))
    for request in logs:
        for _, _, record in iter_log_records(request.resource_logs):
            if is_content_record(record):
                records[bytes(record.trace_id)][bytes(record.span_id)].append(record)

    entries: list[dict[str, Any]] = []
    for trace_id, trace_calls in calls.items():
        joined, _ = join_logs(trace_calls, records.get(trace_id, {}))
        duplicates = nested_duplicates(trace_calls, joined, reader.nested_calls)
        for call in sorted(trace_calls, key=lambda c: c.span.start_time_unix_nano):
            span_logs = joined.get(bytes(call.span.span_id), [])
            if bytes(call.span.span_id) in duplicates:
                skipped.append(_skip(call.span, call.reader.name, "nested_duplicate"))
                continue
            try:
                exchange = call.reader.read(SpanView(call.span, call.resource, call.scope), span_logs)
            except ReadError as exc:
                skipped.append(_skip(call.span, call.reader.name, f"read_error: {exc}"))
                continue
            entry = {
                "trace_id": call.span.trace_id.hex(),
                "span_id": call.span.span_id.hex(),
                "span_name": call.span.name,
                "start_time_unix_nano": call.span.start_time_unix_nano,
                **exchange.to_json(),
                "log_records": len(span_logs),
            }
            if exchange.has_content:
                entries.append(entry)
            elif include_skipped:
                skipped.append({**entry, "skipped": "no_content"})
    if include_skipped:
        entries.extend(skipped)
    return entries


def _skip(span: Span, fmt: str, reason: str) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "span_name": span.name,
        "format": fmt,
        "skipped": reason,
    }
