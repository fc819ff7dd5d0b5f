"""The attribute keys of every span of a request, read in C, for finding candidate spans.

Walking a span's attribute keys through the OTLP protobuf objects costs ~4-5 µs a span from Python
(an object per ``KeyValue`` and per key), more than decoding the whole request. So the received
bytes are decoded a second time, with a *light* schema that mirrors OTLP's field numbers down to
``Span.attributes`` and declares the attributes as ``map<string, bytes>`` (a ``KeyValue`` is
wire-compatible with a map entry: key = 1, value = 2). upb builds each span's key map in C while
skipping everything else; a span is a candidate when a candidate key is in its map (one C-level
set operation), and a candidate's map then answers the readers' key lookups without any walk.
The light tree has the same shape as the full one (both are decoded from the same bytes, and
repeated fields keep their order), so ``light.resource_spans[i].scope_spans[j].spans[k]`` is the
light twin of the full request's span at the same position.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

__all__ = ["LightRequest", "append_to_spans", "light_request", "scope_layout", "splice_scopes"]

_PACKAGE = "otel_judge.light"


def _light_class() -> Any:
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="otel_judge/light_trace.proto", package=_PACKAGE, syntax="proto3")

    def message(name: str, number: int, field_name: str, child: str) -> descriptor_pb2.DescriptorProto:
        msg = proto.message_type.add(name=name)
        msg.field.add(
            name=field_name,
            number=number,
            type=field.TYPE_MESSAGE,
            label=field.LABEL_REPEATED,
            type_name=f".{_PACKAGE}.{child}",
        )
        return msg

    message("Request", 1, "resource_spans", "ResourceSpans")  # ExportTraceServiceRequest.resource_spans = 1
    message("ResourceSpans", 2, "scope_spans", "ScopeSpans")  # ResourceSpans.scope_spans = 2
    message("ScopeSpans", 2, "spans", "Span")  # ScopeSpans.spans = 2
    span = message("Span", 9, "attributes", "Span.AttributesEntry")  # Span.attributes = 9
    span.field.add(name="trace_id", number=1, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)  # Span.trace_id
    span.field.add(name="parent_span_id", number=4, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    entry = span.nested_type.add(name="AttributesEntry")
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    entry.options.map_entry = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


#: The light ``ExportTraceServiceRequest``: ``resource_spans[].scope_spans[].spans[].attributes`` is a
#: map from attribute key to the serialised ``AnyValue``; each light span also has the span's
#: ``trace_id`` and ``parent_span_id`` (enough to tell roots, without the full span).
LightRequest: Any = _light_class()


def light_request(raw: bytes) -> Any | None:
    """``raw`` decoded with the light schema; None when it does not decode."""
    try:
        return LightRequest.FromString(raw)
    except (DecodeError, RuntimeError, ValueError):
        return None


# --------------------------------------------------------------------------- splicing changed scopes


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


Field = tuple[int, int, int, int]  # (field start, length start, content start, content end)


def _fields(buf: bytes, pos: int, end: int, number: int) -> list[Field]:
    """The length-delimited fields ``number`` between ``pos`` and ``end`` (others are skipped);
    ValueError or IndexError on what is not valid wire format."""
    out = []
    while pos < end:
        start = pos
        tag = buf[pos]  # one byte for these messages' field numbers; the general case below
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint(buf, pos)
        wire = tag & 7
        if wire == 2:
            length_at = pos
            length = buf[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(buf, pos)
            if tag >> 3 == number:
                out.append((start, length_at, pos, pos + length))
            pos += length
        elif wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("group or invalid wire type")
    if pos != end:
        raise ValueError("field runs past its message")
    return out


Layout = list[tuple[Field, list[Field]]]  # per resource spans: its field, and its scope spans' fields


def scope_layout(raw: bytes) -> Layout | None:
    """Where each ``ResourceSpans`` and each of its ``ScopeSpans`` lie in an encoded
    ``ExportTraceServiceRequest`` (a few varints per scope: spans are not walked); None when the bytes
    are not valid wire format."""
    try:
        return [(rs, _fields(raw, rs[2], rs[3], 2)) for rs in _fields(raw, 0, len(raw), 1)]
    except (ValueError, IndexError):
        return None


def _field(raw: bytes, field: Field, content: bytes | list[bytes]) -> list[bytes]:
    body = content if isinstance(content, list) else [content]
    return [raw[field[0] : field[1]], _encode_varint(sum(len(part) for part in body)), *body]


def splice_scopes(raw: bytes, layout: Layout, replaced: dict[tuple[int, int], bytes]) -> bytes:
    """``raw`` with the ``ScopeSpans`` at (resource index, scope index) replaced by new encodings (and
    the enclosing length prefixes adjusted): the encoding of a request whose other scopes, resources
    and fields are byte-for-byte the received ones. Cheaper than re-encoding a whole request when a
    stage changed a few of its scopes."""
    out: list[bytes] = []
    pos = 0
    for rs_index, (rs, scopes) in enumerate(layout):
        changed = [(j, ss) for j, ss in enumerate(scopes) if (rs_index, j) in replaced]
        if not changed:
            continue
        out.append(raw[pos : rs[0]])
        content: list[bytes] = []
        at = rs[2]
        for j, ss in changed:
            content.append(raw[at : ss[0]])
            content.extend(_field(raw, ss, replaced[(rs_index, j)]))
            at = ss[3]
        content.append(raw[at : rs[3]])
        out.extend(_field(raw, rs, content))
        pos = rs[3]
    out.append(raw[pos:])
    return b"".join(out)


def append_to_spans(raw: bytes, layout: Layout, appended: dict[tuple[int, int], dict[int, bytes]]) -> bytes | None:
    """``raw`` with encoded fields appended to some spans: ``appended[(resource index, scope index)]``
    maps a span's index in its scope to the bytes to append to it (e.g. one ``Span.attributes``
    entry). Appending a repeated field's element at the end of a message is valid protobuf and decodes
    as that element added last, so only the length prefixes of each changed span, its scope and its
    resource change; every other byte is the received one. None when the bytes do not match."""
    replaced: dict[tuple[int, int], bytes] = {}
    try:
        for (i, j), extra in appended.items():
            ss = layout[i][1][j]
            spans = _fields(raw, ss[2], ss[3], 2)  # ScopeSpans.spans = 2
            content: list[bytes] = []
            at = ss[2]
            for k in sorted(extra):
                field = spans[k]
                tail = extra[k]
                content.append(raw[at : field[1]])  # up to and including the span's tag
                content.append(_encode_varint(field[3] - field[2] + len(tail)))
                content.append(raw[field[2] : field[3]])
                content.append(tail)
                at = field[3]
            content.append(raw[at : ss[3]])
            replaced[(i, j)] = b"".join(content)
    except (ValueError, IndexError):
        return None
    return splice_scopes(raw, layout, replaced)
