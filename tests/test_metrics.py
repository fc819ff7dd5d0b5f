"""``/metrics``: otel-judge's own telemetry in the Prometheus text exposition format (0.0.4).

prometheus_client is not a dependency, so the output is read back with a small *strict* parser of
the format (below): every line must be a well-formed ``# HELP``, ``# TYPE`` or sample line, each
family is announced once by HELP and TYPE before its samples, label values use only the three
escapes the format defines, and histogram buckets must be cumulative and end in ``+Inf`` = count.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from otel_judge import telemetry as telemetry_module
from otel_judge.telemetry import Telemetry
from otel_judge.testing import FakeJudge, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request, span

HEALTH = {"health": {"endpoint": "127.0.0.1:0"}}

# --------------------------------------------------------------------------- a strict 0.0.4 parser

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HELP = re.compile(rf"# HELP ({_NAME}) (.*)")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE = re.compile(rf"({_NAME})(\{{.*\}})? (\S+)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    help: str
    type: str
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The sum over the series of ``name + suffix`` whose labels include ``labels``."""
        return sum(
            v for (n, ls), v in self.samples.items() if n == self.name + suffix and set(labels.items()) <= set(ls)
        )


def _parse_labels(text: str) -> Labels:
    """``{a="x",b="y\\"z"}`` -> pairs; raises on anything the format does not allow."""
    assert text.startswith("{") and text.endswith("}"), text
    body, pos, pairs = text[1:-1], 0, []
    while pos < len(body):
        match = _LABEL_NAME.match(body, pos)
        assert match, f"bad label name at {body[pos:]!r}"
        name, pos = match.group(), match.end()
        assert body[pos : pos + 2] == '="', f'expected =" after {name}'
        pos += 2
        value = []
        while body[pos] != '"':
            if body[pos] == "\\":
                assert body[pos + 1] in _ESCAPES, f"bad escape \\{body[pos + 1]}"
                value.append(_ESCAPES[body[pos + 1]])
                pos += 2
            else:
                assert body[pos] != "\n"
                value.append(body[pos])
                pos += 1
        pos += 1
        pairs.append((name, "".join(value)))
        if pos < len(body):
            assert body[pos] == ",", f"expected , at {body[pos:]!r}"
            pos += 1
    names = [n for n, _ in pairs]
    assert len(names) == len(set(names)), f"duplicate label in {text}"
    return tuple(pairs)


def _parse_value(text: str) -> float:
    assert re.fullmatch(r"[+-]?(Inf|NaN|\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)", text), text
    return float(text.replace("Inf", "inf"))


def _unescape_help(text: str) -> str:
    assert not re.search(r"\\[^\\n]", text), f"bad escape in HELP: {text!r}"
    return re.sub(r"\\(\\|n)", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def _owner(sample: str, family: Family) -> bool:
    if family.type == "histogram":
        return sample in (f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count")
    return sample == family.name


def parse_exposition(text: str) -> dict[str, Family]:
    """Families by name, from strict 0.0.4 text: HELP then TYPE then the family's samples, contiguous."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for line in text[:-1].split("\n"):
        if match := _HELP.fullmatch(line):
            assert match.group(1) not in families, f"family {match.group(1)} announced twice"
            pending_help = (match.group(1), _unescape_help(match.group(2)))
        elif match := _TYPE.fullmatch(line):
            assert pending_help and pending_help[0] == match.group(1), f"TYPE without HELP: {line}"
            current = families[match.group(1)] = Family(match.group(1), pending_help[1], match.group(2))
            pending_help = None
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a sample line: {line!r}"
            assert current is not None and _owner(match.group(1), current), f"sample outside its family: {line}"
            key = (match.group(1), _parse_labels(match.group(2)) if match.group(2) else ())
            assert key not in current.samples, f"duplicate series: {line}"
            current.samples[key] = _parse_value(match.group(3))
    for family in families.values():
        assert family.samples, f"{family.name} has no samples"
        if family.type == "counter":
            assert family.name.endswith("_total")
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    series: dict[Labels, list[tuple[float, float]]] = {}
    for (name, labels), value in family.samples.items():
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = tuple(p for p in labels if p[0] != "le")
            series.setdefault(rest, []).append((_parse_value(le), value))
    assert series, f"{family.name} has no buckets"
    for labels, buckets in series.items():
        buckets.sort()
        assert buckets[-1][0] == math.inf, "the last bucket must be +Inf"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"buckets are not cumulative: {counts}"
        assert family.samples[(family.name + "_count", labels)] == counts[-1]
        assert (family.name + "_sum", labels) in family.samples


# --------------------------------------------------------------------------- tests


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def scrape(session: aiohttp.ClientSession, port: int | None) -> tuple[int, str, str]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_count_what_the_pipeline_did(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """After 5 spans in 2 requests, /metrics says so (receiver spans and requests, counted before the
    sender's reply); every family present has HELP (the instrument's description) and TYPE."""
    config = pipeline_config(sink, None, service=HEALTH)
    async with running(config) as pipeline:
        client = RawClient(pipeline.grpc_port)
        await client.traces(request(span("a"), span("b"), span("c")))
        await client.traces(request(span("d"), span("e")))
        await sink.wait_for_spans(5)
        await client.close()
        status, content_type, text = await scrape(session, pipeline.health_port)

    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_exposition(text)
    spans = families["otel_judge_receiver_spans_total"]
    assert spans.type == "counter" and spans.help == "Spans accepted by the receivers."
    assert spans.value(transport="grpc") == 5
    requests = families["otel_judge_receiver_requests_total"]
    assert requests.value(transport="grpc", signal="traces", outcome="accepted") == 2
    assert families["otel_judge_exporter_queue_size"].type == "gauge"
    described = {telemetry_module.prometheus_name(i): i.description for i in telemetry_module.INSTRUMENTS}
    for name, family in families.items():
        assert family.help == described[name]


async def test_judge_durations_are_a_histogram(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """Judge calls appear as otel_judge_judge_duration_seconds with the fixed buckets, +Inf = count."""
    async with FakeJudge() as judge:
        config = pipeline_config(sink, judge, service=HEALTH)
        async with running(config) as pipeline:
            client = RawClient(pipeline.grpc_port)
            await client.traces(request(genai_span("one"), genai_span("two")))
            await sink.wait_for_spans(2)
            await client.close()
            _, _, text = await scrape(session, pipeline.health_port)

    duration = parse_exposition(text)["otel_judge_judge_duration_seconds"]
    assert duration.type == "histogram"
    assert duration.value("_count") == 2
    bounds = sorted({dict(ls)["le"] for n, ls in duration.samples if n.endswith("_bucket")}, key=float)
    assert bounds == ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"]
    assert duration.value("_bucket", le="+Inf") == 2


async def test_metrics_off_is_not_served(sink: SpanSink, session: aiohttp.ClientSession) -> None:
    """service.health.metrics: false leaves /metrics unrouted (404); /healthz still answers."""
    config = pipeline_config(sink, None, service={"health": {"endpoint": "127.0.0.1:0", "metrics": False}})
    async with running(config) as pipeline:
        status, _, _ = await scrape(session, pipeline.health_port)
        async with session.get(f"http://127.0.0.1:{pipeline.health_port}/healthz") as resp:
            health = resp.status

    assert (status, health) == (404, 200)


def test_rendering_escapes_labels_and_covers_every_instrument_with_values() -> None:
    """Label values with backslash, quote and newline survive the round trip; every declared instrument
    that has a value is rendered (and none without); values keep their precision."""
    telemetry = Telemetry()
    for inst in telemetry_module.INSTRUMENTS:
        if inst.kind == "counter":
            telemetry.add(inst.name, 2.5, kind='a\\b"c\nd')
        elif inst.kind == "gauge":
            telemetry.set(inst.name, -1, exporter="x")
        else:
            telemetry.record(inst.name, 0.3)
            telemetry.record(inst.name, 120)
    families = parse_exposition(telemetry.render_prometheus())

    assert set(families) == {telemetry_module.prometheus_name(i) for i in telemetry_module.INSTRUMENTS}
    calls = families["otel_judge_judge_calls_total"]
    assert calls.samples == {("otel_judge_judge_calls_total", (("kind", 'a\\b"c\nd'),)): 2.5}
    assert families["otel_judge_held_bytes"].value(exporter="x") == -1
    duration = families["otel_judge_judge_duration_seconds"]
    assert duration.value("_bucket", le="0.25") == 0
    assert duration.value("_bucket", le="0.5") == 1
    assert duration.value("_bucket", le="30") == 1
    assert duration.value("_bucket", le="+Inf") == 2
    assert duration.value("_sum") == 120.3
    assert Telemetry().render_prometheus() == ""


def test_histogram_counts_do_not_stop_at_the_sample_window() -> None:
    """The in-memory sample list is capped at 10,000; the rendered count and sum are not."""
    telemetry = Telemetry()
    for _ in range(10_050):
        telemetry.record("otel_judge.judge.duration", 1.0)
    families = parse_exposition(telemetry.render_prometheus())

    assert len(telemetry.samples("otel_judge.judge.duration")) == 10_000
    assert families["otel_judge_judge_duration_seconds"].value("_count") == 10_050
    assert families["otel_judge_judge_duration_seconds"].value("_sum") == 10_050


NOT_EXPOSITION = {
    # id: text the strict parser must refuse
    "no-trailing-newline": "# HELP a_total x\n# TYPE a_total counter\na_total 1",
    "sample-before-type": "a 1\n",
    "type-without-help": "# TYPE a gauge\na 1\n",
    "bad-label-escape": '# HELP a x\n# TYPE a gauge\na{k="\\t"} 1\n',
    "unquoted-label": "# HELP a x\n# TYPE a gauge\na{k=v} 1\n",
    "bad-value": "# HELP a x\n# TYPE a gauge\na one\n",
    "counter-without-total": "# HELP a x\n# TYPE a counter\na 1\n",
    "not-cumulative": '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    "duplicate-series": "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
}


@pytest.mark.parametrize("text", NOT_EXPOSITION.values(), ids=NOT_EXPOSITION.keys())
def test_the_strict_parser_refuses_malformed_text(text: str) -> None:
    """The parser the other tests rely on is strict: each of these is refused."""
    with pytest.raises(AssertionError):
        parse_exposition(text)
