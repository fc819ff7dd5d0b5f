"""The one data model: OTLP protobuf messages, behind a thin wrapper that keeps the received bytes.

A batch that otel-judge does not modify is forwarded as the exact bytes it arrived as (no
re-serialisation, and byte-for-byte fidelity); once a stage changes the message it calls
:meth:`TraceBatch.mark_modified` and the bytes are produced again on export. Protobuf's wire
format makes concatenating two serialised requests of the same type a valid merged request, which
the exporter uses to batch without decoding.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from otel_judge.errors import MalformedError

if TYPE_CHECKING:
    from otel_judge.storage import Entry

__all__ = [
    "LogsBatch",
    "MetricsBatch",
    "TraceBatch",
    "any_value_to_py",
    "attributes_to_dict",
    "decode_otlp_json",
    "encode_otlp_json",
    "py_to_any_value",
    "set_attribute",
]


class _Batch:
    """An OTLP export request plus its wire bytes while they are still valid (traces or logs).

    ``tokens``: in persistent mode (``storage``), one reference to each stored request whose content
    this batch carries (:class:`otel_judge.storage.Entry`; a merged or rebuilt batch may carry several,
    and the same one more than once). The consumer a batch is handed to owns those references and
    releases them once the content was accepted downstream; in memory mode it is always ``()``.
    """

    __slots__ = ("_count", "_raw", "_request", "tokens")
    _message: Any  # the request class
    _kind: str

    def __init__(self, request: Any = None, raw: bytes | None = None, tokens: tuple[Entry, ...] = ()) -> None:
        if request is None and raw is None:
            raise ValueError("a batch needs a request or its bytes")
        self._request = request
        self._raw = raw
        self._count = -1 if request is None else self._counter(request)
        self.tokens = tokens

    @staticmethod
    def _counter(request: Any) -> int:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, raw: bytes) -> Any:
        """Decode ``raw``; :class:`MalformedError` if it is not the request this batch holds."""
        request = cls._message()
        try:
            request.ParseFromString(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise MalformedError(f"not an OTLP {cls._kind}: {exc}") from None
        return cls(request, raw)

    @property
    def request(self) -> Any:
        if self._request is None:
            assert self._raw is not None
            self._request = self._message.FromString(self._raw)
            self._count = self._counter(self._request)
        return self._request

    def mark_modified(self) -> None:
        """Call after changing :attr:`request`: the received bytes are no longer valid."""
        self._raw = None

    def modified_to(self, raw: bytes) -> None:
        """Call after changing :attr:`request` when the caller has the bytes it now encodes to (e.g.
        the received ones with the changed parts re-encoded): they are sent, not a new encoding."""
        self._raw = raw

    def encoded_as(self, raw: bytes) -> None:
        """The batch is now ``raw``, changed in its bytes rather than in :attr:`request` (e.g. fields
        appended to some spans): the decoded request is dropped, and decoded again from ``raw`` if
        asked for. The item count stays."""
        self._raw = raw
        self._request = None

    def to_bytes(self) -> bytes:
        if self._raw is None:
            assert self._request is not None
            self._raw = self._request.SerializeToString()
        return self._raw

    @property
    def is_modified(self) -> bool:
        return self._raw is None


class TraceBatch(_Batch):
    """An ``ExportTraceServiceRequest`` plus its wire bytes while they are still valid."""

    __slots__ = ()
    _message = ExportTraceServiceRequest
    _kind = "ExportTraceServiceRequest"
    request: ExportTraceServiceRequest

    @staticmethod
    def _counter(request: Any) -> int:
        return count_spans(request)

    @property
    def span_count(self) -> int:
        return self._count


class LogsBatch(_Batch):
    """An ``ExportLogsServiceRequest`` plus its wire bytes while they are still valid."""

    __slots__ = ()
    _message = ExportLogsServiceRequest
    _kind = "ExportLogsServiceRequest"
    request: ExportLogsServiceRequest

    @staticmethod
    def _counter(request: Any) -> int:
        return count_log_records(request)

    @property
    def record_count(self) -> int:
        return self._count


class MetricsBatch(_Batch):
    """An ``ExportMetricsServiceRequest`` (otel-judge's own and evaluation metrics) and its bytes."""

    __slots__ = ()
    _message = ExportMetricsServiceRequest
    _kind = "ExportMetricsServiceRequest"
    request: ExportMetricsServiceRequest

    @staticmethod
    def _counter(request: Any) -> int:
        return count_data_points(request)

    @property
    def point_count(self) -> int:
        return self._count


def count_data_points(request: ExportMetricsServiceRequest) -> int:
    """Data points of every metric, whatever its type (the unit OTLP counts metrics in)."""
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def count_log_records(request: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def iter_spans(resource_spans: Iterable[ResourceSpans]) -> Iterator[tuple[ResourceSpans, Any, Span]]:
    """Yield ``(resource_spans, scope_spans, span)`` for every span."""
    for rs in resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield rs, ss, span


def iter_log_records(resource_logs: Iterable[ResourceLogs]) -> Iterator[tuple[ResourceLogs, Any, Any]]:
    for rl in resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                yield rl, sl, record


# --------------------------------------------------------------------------- AnyValue


def any_value_to_py(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to plain Python (str, bool, int, float, bytes, list, dict, None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_py(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_py(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes_to_dict(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value_to_py(kv.value) for kv in attributes}


def py_to_any_value(value: Any, out: AnyValue | None = None) -> AnyValue:
    """Convert plain Python to an ``AnyValue`` (into ``out`` when given)."""
    out = AnyValue() if out is None else out
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list | tuple):
        arr = out.array_value
        for item in value:
            py_to_any_value(item, arr.values.add())
    elif isinstance(value, dict):
        kvl = out.kvlist_value
        for key, item in value.items():
            kv = kvl.values.add()
            kv.key = str(key)
            py_to_any_value(item, kv.value)
    elif value is None:
        pass
    else:
        out.string_value = str(value)
    return out


def set_attribute(attributes: Any, key: str, value: Any) -> None:
    """Set ``key`` on a repeated ``KeyValue`` field, replacing an existing value of that key."""
    for kv in attributes:
        if kv.key == key:
            kv.value.Clear()
            py_to_any_value(value, kv.value)
            return
    kv = attributes.add()
    kv.key = key
    py_to_any_value(value, kv.value)


# --------------------------------------------------------------------------- OTLP/JSON

_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


def _ids(node: Any, convert: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (convert(v) if k in _ID_FIELDS and isinstance(v, str) else _ids(v, convert)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids(v, convert) for v in node]
    return node


def encode_otlp_json(
    request: ExportTraceServiceRequest | ExportLogsServiceRequest | ExportMetricsServiceRequest,
) -> str:
    """OTLP/JSON as the spec and the Collector's file exporter write it: hex ids, integer enums."""
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    data = _ids(data, lambda v: base64.b64decode(v).hex())
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_otlp_json(text: str | bytes, kind: type[Any]) -> Any:
    """Parse OTLP/JSON (hex ids; also accepts proto3 JSON with base64 ids) into ``kind``."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError(f"not JSON: {exc}") from None

    def to_b64(value: str) -> str:
        if len(value) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in value):
            return base64.b64encode(bytes.fromhex(value)).decode()
        return value  # already base64 (proto3 JSON)

    try:
        return json_format.ParseDict(_ids(data, to_b64), kind(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise MalformedError(f"not OTLP/JSON {kind.__name__}: {exc}") from None
