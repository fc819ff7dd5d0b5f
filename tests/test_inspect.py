"""``otel-judge inspect`` and reader selection: files in every OTLP encoding, reasons, plugins."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_judge.config import ReaderConfig
from otel_judge.errors import ConfigError
from otel_judge.inspector import InspectError, inspect_requests, load_files
from otel_judge.otlp import encode_otlp_json
from otel_judge.reader import GenAIReader

from .test_log_join import capture


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_judge", *args], capture_output=True, text=True, check=False)


def collector_file(directory: Path, out: Path) -> Path:
    """Re-encode a capture as the Collector's file exporter writes it: OTLP/JSON, one request per line."""
    lines = []
    for path in sorted(directory.glob("*.pb")):
        kind: Any = ExportLogsServiceRequest if path.name.startswith("logs") else ExportTraceServiceRequest
        if path.name.startswith(("traces", "logs")):
            lines.append(encode_otlp_json(kind.FromString(path.read_bytes())))
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("name", ["otelv2-event_only", "openinference-default", "otelv2legacy-true"])
def test_protobuf_otlp_json_lines_and_proto3_json_read_the_same(name: str, tmp_path: Path) -> None:
    """The same capture as binary protobuf, Collector OTLP/JSON lines (hex ids) and proto3 JSON (base64 ids)."""
    directory = capture(name) / "tool_call"
    from_pb = inspect_requests(*load_files(sorted(directory.glob("*.pb"))), include_skipped=True)
    from_lines = inspect_requests(
        *load_files([collector_file(directory, tmp_path / "otlp.jsonl")]), include_skipped=True
    )
    from_proto3 = inspect_requests(
        *load_files(sorted(p for p in directory.glob("*.json") if p.name.startswith(("traces", "logs")))),
        include_skipped=True,
    )

    assert from_pb and from_pb == from_lines == from_proto3


def test_cli_prints_one_entry_per_judgeable_call_and_reasons_with_all() -> None:
    directory = capture("vercel-ai-default") / "tool_call"
    files = [str(p) for p in sorted(directory.glob("*.pb"))]

    judged = json.loads(run_cli("inspect", *files).stdout)
    everything = json.loads(run_cli("inspect", "--all", *files).stdout)

    assert [e["span_name"] for e in judged] == ["ai.generateText.doGenerate", "ai.generateText.doGenerate"]
    assert {e["trace_id"] for e in judged} and all(len(e["span_id"]) == 16 for e in judged)
    assert judged[1]["completion"] and judged[0]["tool_calls"][0]["name"] == "get_weather"
    reasons = sorted(e["skipped"] for e in everything if "skipped" in e)
    assert reasons == ["not_a_model_call", "not_a_model_call"]  # the ai.generateText wrapper and ai.toolCall


def test_outermost_nested_calls_judges_the_sdk_wrapper(tmp_path: Path) -> None:
    """reader.nested_calls: outermost judges ai.generateText (the whole tool loop) instead of each doGenerate."""
    directory = capture("vercel-ai-default") / "tool_call"
    config = tmp_path / "c.yaml"
    config.write_text("exporters: {debug: {}}\nreader: {nested_calls: outermost}\n")

    judged = json.loads(run_cli("inspect", "--config", str(config), *map(str, sorted(directory.glob("*.pb")))).stdout)

    assert [e["span_name"] for e in judged] == ["ai.generateText"]
    assert "18" in judged[0]["completion"]


def test_not_otlp_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"\x00\x01 definitely not otlp \xff")

    out = run_cli("inspect", str(bad))

    assert out.returncode == 2
    assert "notes.txt" in out.stderr and "OTLP" in out.stderr
    with pytest.raises(InspectError):
        load_files([bad])


def test_reader_formats_selects_readers_and_rejects_unknown_names() -> None:
    reader = GenAIReader.from_config(ReaderConfig(formats=["openinference"]))

    assert [r.name for r in reader.readers] == ["openinference"]
    with pytest.raises(ConfigError) as caught:
        GenAIReader.from_config(ReaderConfig(formats=["openinference", "langfuse"]))
    assert caught.value.problems[0].startswith("reader.formats: unknown reader(s) langfuse")


def test_third_party_reader_from_an_entry_point(tmp_path: Path) -> None:
    """A package that declares an ``otel_judge.readers`` entry point is asked first."""
    site = tmp_path / "site"
    (site / "acme_reader").mkdir(parents=True)
    (site / "acme_reader" / "__init__.py").write_text(
        textwrap.dedent("""
        from otel_judge.model import Exchange, Message
        from otel_judge.reader import Claim

        class AcmeReader:
            name = "acme"
            candidate_keys = frozenset({"acme.prompt"})
            def classify(self, view):
                return Claim.LLM_CALL if view.get("acme.prompt") is not None else None
            def read(self, view, logs):
                return Exchange(format="acme", messages=[Message("user", view.get("acme.prompt"))],
                                completion=view.get("acme.answer"))
    """)
    )
    dist = site / "acme_reader-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-reader\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_judge.readers]\nacme = acme_reader:AcmeReader\n")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(site)!r})
        from opentelemetry.proto.trace.v1.trace_pb2 import Span
        from otel_judge.reader import GenAIReader, SpanView
        from otel_judge.otlp import set_attribute
        span = Span(name="acme call")
        set_attribute(span.attributes, "acme.prompt", "hi")
        set_attribute(span.attributes, "acme.answer", "hello")
        reader = GenAIReader()
        exchange = reader.read(SpanView(span))
        print(reader.readers[0].name, exchange.format, exchange.completion, reader.is_candidate(span))
    """)

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["acme", "acme", "hello", "True"]
