"""Security of the receivers: bearer-token / API-key authentication, key rotation, TLS and mTLS.

Every test runs real servers on 127.0.0.1 and real clients (grpc, aiohttp, the OpenTelemetry SDK's
OTLP/gRPC exporter). Certificates come from a throw-away CA made with the ``openssl`` command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_judge.component import FakeClock, Settings
from otel_judge.errors import ConfigError
from otel_judge.pipeline import Pipeline
from otel_judge.testing import SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import request, span

KEY = "k3y-0f-the-test-suite"
KEY_ENV = "OTEL_JUDGE_TEST_RECEIVER_KEY"
TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = "application/x-protobuf"


# --------------------------------------------------------------------------- a throw-away PKI


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path

    def read(self, name: str) -> bytes:
        path: Path = getattr(self, name)
        return path.read_bytes()


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(cwd: Path, name: str) -> None:
    _openssl(
        cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _make_leaf(cwd: Path, name: str, ca: str, extensions: str) -> None:
    _openssl(
        cwd, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-set_serial", str(abs(hash(name)) % 10**12 + 1), "-out", f"{name}.pem", "-days", "2",
        "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1 (IP SAN), a client certificate, and a stranger's."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(
        d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _make_leaf(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return Pki(
        d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
        d / "stranger.pem", d / "stranger.key",
    )  # fmt: skip


def tls_block(pki: Pki, mtls: bool = False) -> dict[str, str]:
    block = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    if mtls:
        block["client_ca_file"] = str(pki.ca)
    return block


def client_ssl(pki: Pki, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(getattr(pki, f"{cert}_cert")), str(getattr(pki, f"{cert}_key")))
    return context


# --------------------------------------------------------------------------- clients


class GrpcClient:
    """A raw OTLP/gRPC trace client with optional TLS and metadata."""

    def __init__(self, port: int, credentials: grpc.ChannelCredentials | None = None) -> None:
        target = f"127.0.0.1:{port}"
        self.channel = (
            grpc.aio.insecure_channel(target) if credentials is None else grpc.aio.secure_channel(target, credentials)
        )
        self._export = self.channel.unary_unary(TRACE_METHOD)

    async def send(self, name: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
        try:
            await self._export(request(span(name)).SerializeToString(), metadata=metadata or None, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def close(self) -> None:
        await self.channel.close()


async def http_send(
    session: aiohttp.ClientSession, base: str, name: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> aiohttp.ClientResponse:
    body = request(span(name)).SerializeToString()
    async with session.post(
        f"{base}/v1/traces", data=body, headers={"Content-Type": PROTOBUF, **(headers or {})}, **kwargs
    ) as resp:
        await resp.read()
        return resp


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def receivers(auth: dict[str, Any] | None = None, grpc_tls: Any = None, http_tls: Any = None) -> dict[str, Any]:
    otlp: dict[str, Any] = {
        "protocols": {
            "grpc": {"endpoint": "127.0.0.1:0", "tls": grpc_tls},
            "http": {"endpoint": "127.0.0.1:0", "tls": http_tls},
        }
    }
    if auth is not None:
        otlp["auth"] = auth
    return {"otlp": otlp}


# --------------------------------------------------------------------------- authentication

AUTH_CASES = [
    # id, header value (None: absent), accepted?
    ("no-header", None, False),
    ("wrong-key", "Bearer not-the-key", False),
    ("key-without-scheme", KEY, False),
    ("wrong-scheme", f"Basic {KEY}", False),
    ("key-as-prefix", f"Bearer {KEY}x", False),
    ("bearer", f"Bearer {KEY}", True),
    ("scheme-any-case", f"bEaReR   {KEY}", True),
]


async def test_grpc_and_http_accept_only_valid_bearer_tokens(
    sink: SpanSink, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each credential case on both transports: refused → UNAUTHENTICATED / 401 (+ WWW-Authenticate) and
    nothing reaches the sink; accepted → forwarded. Keys never appear in logs or error messages."""
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    config = pipeline_config(sink, None, receivers=receivers({"keys_env": [KEY_ENV]}))
    grpc_codes: dict[str, grpc.StatusCode] = {}
    http_answers: dict[str, tuple[int, str | None, bytes]] = {}
    async with running(config) as pipeline:
        client = GrpcClient(pipeline.grpc_port)
        base = f"http://127.0.0.1:{pipeline.http_port}"
        for case_id, value, _ in AUTH_CASES:
            metadata = (("authorization", value),) if value is not None else ()
            grpc_codes[case_id] = await client.send(f"grpc-{case_id}", metadata)
            headers = {"Authorization": value} if value is not None else {}
            body = request(span(f"http-{case_id}")).SerializeToString()
            async with session.post(
                f"{base}/v1/traces", data=body, headers={"Content-Type": PROTOBUF, **headers}
            ) as resp:
                http_answers[case_id] = (resp.status, resp.headers.get("WWW-Authenticate"), await resp.read())
        expected = {f"{t}-{c}" for c, _, ok in AUTH_CASES if ok for t in ("grpc", "http")}
        received = await sink.wait_for_spans(len(expected))
        assert "auth ON (authorization: Bearer)" in pipeline.describe()
        await client.close()

    for case_id, _, ok in AUTH_CASES:
        assert grpc_codes[case_id] == (grpc.StatusCode.OK if ok else grpc.StatusCode.UNAUTHENTICATED), case_id
        status, challenge, body = http_answers[case_id]
        if ok:
            assert status == 200, case_id
        else:
            assert (status, challenge) == (401, "Bearer"), case_id
            message = status_pb2.Status.FromString(body)
            assert message.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            assert KEY not in message.message
    assert sorted(r.span.name for r in received) == sorted(expected), "only authenticated spans are forwarded"
    assert KEY not in caplog.text


async def test_api_key_header_without_scheme(sink: SpanSink, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    """``header: x-api-key, scheme: null``: the bare header value is the key, on both transports."""
    keys = tmp_path / "keys"
    keys.write_text(f"# senders\n\n{KEY}\n  other-key  \n")
    auth = {"header": "X-API-Key", "scheme": None, "keys_file": str(keys)}
    async with running(pipeline_config(sink, None, receivers=receivers(auth))) as pipeline:
        client = GrpcClient(pipeline.grpc_port)
        base = f"http://127.0.0.1:{pipeline.http_port}"
        codes = [
            await client.send("grpc-ok", (("x-api-key", "other-key"),)),
            await client.send("grpc-bearer", (("x-api-key", f"Bearer {KEY}"),)),
            await client.send("grpc-comment", (("x-api-key", "# senders"),)),
        ]
        ok = await http_send(session, base, "http-ok", {"X-Api-Key": KEY})
        wrong_header = await http_send(session, base, "http-wrong-header", {"Authorization": KEY})
        received = await sink.wait_for_spans(2)
        await client.close()

    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED]
    assert (ok.status, wrong_header.status) == (200, 401)
    assert "WWW-Authenticate" not in wrong_header.headers
    assert sorted(r.span.name for r in received) == ["grpc-ok", "http-ok"]


async def test_keys_file_rotation_takes_effect_within_a_second(
    sink: SpanSink, session: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Replace the keys file: the old key works until the (fake) clock passes the re-check interval,
    then only the new key is accepted, without a restart."""
    caplog.set_level(logging.DEBUG)
    keys = tmp_path / "keys"
    keys.write_text("old-key\n")
    clock = FakeClock()
    config = pipeline_config(sink, None, receivers=receivers({"keys_file": str(keys)}))
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        client = GrpcClient(pipeline.grpc_port)
        base = f"http://127.0.0.1:{pipeline.http_port}"
        old = {"Authorization": "Bearer old-key"}
        new = {"Authorization": "Bearer new-key"}
        before = (await http_send(session, base, "old-1", old)).status

        replacement = tmp_path / "keys.new"
        replacement.write_text("# rotated\nnew-key\n")
        os.replace(replacement, keys)
        within_interval = (await http_send(session, base, "old-2", old)).status  # not looked at yet

        clock.advance(1.5)
        after_old = (await http_send(session, base, "old-3", old)).status
        after_new = (await http_send(session, base, "new-1", new)).status
        grpc_old = await client.send("old-4", (("authorization", "Bearer old-key"),))
        grpc_new = await client.send("new-2", (("authorization", "Bearer new-key"),))
        received = await sink.wait_for_spans(4)
        await client.close()

    assert (before, within_interval, after_old, after_new) == (200, 200, 401, 200)
    assert (grpc_old, grpc_new) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK)
    assert sorted(r.span.name for r in received) == ["new-1", "new-2", "old-1", "old-2"]
    assert "old-key" not in caplog.text and "new-key" not in caplog.text


async def test_keys_file_unreadable_after_start_keeps_the_last_keys(
    sink: SpanSink, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A keys file that disappears after start-up does not lock everyone out (nor crash): last keys stay."""
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n")
    clock = FakeClock()
    config = pipeline_config(sink, None, receivers=receivers({"keys_file": str(keys)}))
    async with running(config, Settings(clock=clock), tick=None) as pipeline:
        keys.unlink()
        clock.advance(2)
        answer = await http_send(
            session, f"http://127.0.0.1:{pipeline.http_port}", "s", {"Authorization": f"Bearer {KEY}"}
        )
        await sink.wait_for_spans(1)
    assert answer.status == 200


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"keys_env": ["OTEL_JUDGE_TEST_UNSET"]}, ["OTEL_JUDGE_TEST_UNSET is not set", "no key could be loaded"]),
        ({"keys_file": "{tmp}/missing"}, ["keys_file: cannot read {tmp}/missing"]),
        ({"keys_env": ["OTEL_JUDGE_TEST_UNSET"], "keys_file": "{tmp}/empty"}, ["{tmp}/empty holds no key"]),
    ],
    ids=["env-unset", "file-missing", "env-unset-and-file-empty"],
)
def test_start_up_fails_when_no_key_can_be_loaded(
    sink: SpanSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: dict[str, Any], expected: list[str]
) -> None:
    """Auth on but no usable key: building the pipeline fails, saying which setting is wrong."""
    monkeypatch.delenv("OTEL_JUDGE_TEST_UNSET", raising=False)
    (tmp_path / "empty").write_text("# nothing yet\n\n")
    auth = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in auth.items()}
    with pytest.raises(ConfigError) as caught:
        Pipeline(pipeline_config(sink, None, receivers=receivers(auth)))
    text = "\n".join(caught.value.problems)
    for fragment in expected:
        assert fragment.replace("{tmp}", str(tmp_path)) in text


# --------------------------------------------------------------------------- TLS


async def test_real_sdk_exporter_over_tls_with_a_bearer_token(
    sink: SpanSink, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OpenTelemetry SDK's OTLP/gRPC exporter, configured as users would (https + CA + header)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    config = pipeline_config(sink, None, receivers=receivers({"keys_env": [KEY_ENV]}, grpc_tls=tls_block(pki)))
    async with running(config) as pipeline:
        provider = TracerProvider(resource=Resource.create({"service.name": "tls-app"}))
        exporter = OTLPSpanExporter(
            endpoint=f"https://127.0.0.1:{pipeline.grpc_port}",
            credentials=grpc.ssl_channel_credentials(root_certificates=pki.read("ca")),
            headers={"authorization": f"Bearer {KEY}"},
        )
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
        with provider.get_tracer("tests").start_as_current_span("over-tls"):
            pass
        assert await asyncio.to_thread(provider.force_flush, 30_000)
        received = await sink.wait_for_spans(1)
        provider.shutdown()
        assert "OTLP/gRPC on 127.0.0.1:0 (TLS)" in pipeline.describe()

    assert [r.span.name for r in received] == ["over-tls"]


async def test_grpc_tls_and_mtls(sink: SpanSink, pki: Pki) -> None:
    """TLS: a client trusting the CA is served, a plaintext client is not. mTLS: only a client with a
    certificate from the configured CA is served; none of the refused requests reaches the sink."""
    results: dict[str, grpc.StatusCode] = {}
    config = pipeline_config(sink, None, receivers=receivers(grpc_tls=tls_block(pki)))
    async with running(config) as pipeline:
        clients = {
            "tls-ok": GrpcClient(pipeline.grpc_port, grpc.ssl_channel_credentials(pki.read("ca"))),
            "tls-plaintext": GrpcClient(pipeline.grpc_port),
        }
        for name, client in clients.items():
            results[name] = await client.send(name)
            await client.close()
        await sink.wait_for_spans(1)

    config = pipeline_config(sink, None, receivers=receivers(grpc_tls=tls_block(pki, mtls=True)))
    async with running(config) as pipeline:
        ca = pki.read("ca")
        clients = {
            "mtls-ok": GrpcClient(
                pipeline.grpc_port, grpc.ssl_channel_credentials(ca, pki.read("client_key"), pki.read("client_cert"))
            ),
            "mtls-no-cert": GrpcClient(pipeline.grpc_port, grpc.ssl_channel_credentials(ca)),
            "mtls-stranger": GrpcClient(
                pipeline.grpc_port,
                grpc.ssl_channel_credentials(ca, pki.read("stranger_key"), pki.read("stranger_cert")),
            ),
        }
        for name, client in clients.items():
            results[name] = await client.send(name)
            await client.close()
        received = await sink.wait_for_spans(2)
        assert "(mTLS)" in pipeline.describe()

    assert results == {
        "tls-ok": grpc.StatusCode.OK,
        "tls-plaintext": grpc.StatusCode.UNAVAILABLE,
        "mtls-ok": grpc.StatusCode.OK,
        "mtls-no-cert": grpc.StatusCode.UNAVAILABLE,
        "mtls-stranger": grpc.StatusCode.UNAVAILABLE,
    }
    assert sorted(r.span.name for r in received) == ["mtls-ok", "tls-ok"]


async def test_http_tls_and_mtls(sink: SpanSink, pki: Pki, session: aiohttp.ClientSession) -> None:
    """HTTPS with the CA works and plain HTTP does not; with mTLS a client certificate from the CA is
    required. Refused connections forward nothing."""
    config = pipeline_config(sink, None, receivers=receivers(http_tls=tls_block(pki)))
    async with running(config) as pipeline:
        https = f"https://127.0.0.1:{pipeline.http_port}"
        ok = await http_send(session, https, "tls-ok", ssl=client_ssl(pki))
        with pytest.raises(aiohttp.ClientError):
            await http_send(session, f"http://127.0.0.1:{pipeline.http_port}", "tls-plaintext")
        await sink.wait_for_spans(1)

    config = pipeline_config(sink, None, receivers=receivers(http_tls=tls_block(pki, mtls=True)))
    async with running(config) as pipeline:
        https = f"https://127.0.0.1:{pipeline.http_port}"
        mtls_ok = await http_send(session, https, "mtls-ok", ssl=client_ssl(pki, "client"))
        for name, cert in (("mtls-no-cert", None), ("mtls-stranger", "stranger")):
            with pytest.raises(aiohttp.ClientError):
                await http_send(session, https, name, ssl=client_ssl(pki, cert))
        received = await sink.wait_for_spans(2)

    assert (ok.status, mtls_ok.status) == (200, 200)
    assert sorted(r.span.name for r in received) == ["mtls-ok", "tls-ok"]


BAD_TLS = {
    # breakage: what the start-up error must say
    "missing-cert": "tls.cert_file: cannot read {dir}/nope.pem",
    "garbage-key": "{dir}/garbage.pem are not a PEM certificate and its private key",
    "missing-client-ca": "tls.client_ca_file: cannot read {dir}/no-ca.pem",
    "garbage-client-ca": "tls.client_ca_file: {dir}/garbage.pem is not a PEM CA bundle",
}


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("breakage", list(BAD_TLS))
async def test_bad_tls_files_stop_start_up_naming_the_file(
    sink: SpanSink, pki: Pki, tmp_path: Path, transport: str, breakage: str
) -> None:
    """Unreadable or invalid PEM files: start() raises OSError (cli: "cannot start") naming setting and file."""
    expected = BAD_TLS[breakage]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    tls: dict[str, str] = tls_block(pki)
    if breakage == "missing-cert":
        tls["cert_file"] = str(tmp_path / "nope.pem")
    elif breakage == "garbage-key":
        tls["key_file"] = str(garbage)
    elif breakage == "missing-client-ca":
        tls["client_ca_file"] = str(tmp_path / "no-ca.pem")
    else:
        tls["client_ca_file"] = str(garbage)
    section = receivers(**{f"{transport}_tls": tls})
    pipeline = Pipeline(pipeline_config(sink, None, receivers=section))
    try:
        with pytest.raises(OSError) as caught:
            await pipeline.start(tick_interval=None)
    finally:
        await pipeline.shutdown(1)
    message = str(caught.value)
    assert f"receivers.otlp.protocols.{transport}." in message
    assert expected.replace("{dir}", str(tmp_path)) in message
