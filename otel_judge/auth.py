"""Who may send: bearer-token / API-key authentication of senders, and the servers' TLS material.

:class:`Authenticator` is shared by both OTLP transports. A receiver asks it about the one header
(gRPC metadata key) it is configured for *before* it reads or decodes the request body, and refuses
the request with UNAUTHENTICATED / 401 when the credential is missing or wrong, so an
unauthenticated sender never gets anything processed.

:func:`server_ssl_context` and :func:`read_server_tls` load the PEM files of a receiver's ``tls``
block once, at start-up, and fail with an :class:`OSError` naming the offending setting and file
(``cli.py`` reports it as "cannot start").
"""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

from otel_judge.component import Settings
from otel_judge.config import AuthConfig, TlsServerConfig
from otel_judge.errors import ConfigError, UnauthenticatedError

__all__ = ["Authenticator", "read_server_tls", "server_ssl_context"]

# How often (in seconds of the injected clock) the keys file is looked at for changes.
RELOAD_INTERVAL = 1.0

_FileSignature = tuple[int, int, int]  # (mtime_ns, size, inode): any change means "re-read"


class Authenticator:
    """Checks the credential a sender presents against the configured keys.

    Contract:

    * ``header`` is the (lower-case) header / gRPC metadata key carrying the credential; when
      ``scheme`` is set (``Bearer``) the value must be ``<scheme> <key>`` (scheme compared
      case-insensitively), otherwise the whole value is the key.
    * Keys come from the environment variables in ``keys_env`` (read once, here) and from
      ``keys_file`` (one key per line; blank lines and ``#`` comments ignored). The file is re-read
      when its modification time, size or inode changes, looked at no more than once per
      :data:`RELOAD_INTERVAL` of the injected clock, so keys rotate without a restart. If the file
      becomes unreadable after start-up the last keys read stay in force (and a warning is logged);
      a file emptied on purpose revokes its keys.
    * Comparison is constant-time against every key. Neither keys nor presented values are logged
      or put into error messages.
    * Construction raises :class:`ConfigError` when the keys file cannot be read or when no key at
      all could be loaded.
    """

    def __init__(self, config: AuthConfig, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.header = config.header.lower()
        self.scheme = config.scheme
        self._settings = settings
        self._file = Path(config.keys_file) if config.keys_file else None
        env = os.environ if environ is None else environ
        self._env_keys: tuple[bytes, ...] = ()
        unset: list[str] = []
        for name in config.keys_env:
            value = env.get(name, "").strip()
            if value:
                self._env_keys += (value.encode(),)
            else:
                unset.append(name)
        self._file_keys: tuple[bytes, ...] = ()
        self._file_signature: _FileSignature | None = None
        self._file_problem: str | None = None
        self._checked_at = settings.clock.monotonic()
        if self._file is not None:
            try:
                self._file_signature, self._file_keys = self._read_file(self._file)
            except OSError as exc:
                raise ConfigError(
                    [f"receivers.otlp.auth.keys_file: cannot read {self._file}: {exc.strerror or exc}"]
                ) from None
        if not self._env_keys and not self._file_keys:
            problems = [f"receivers.otlp.auth.keys_env: {name} is not set (or is empty)" for name in unset]
            if self._file is not None:
                problems.append(f"receivers.otlp.auth.keys_file: {self._file} holds no key")
            problems.append("receivers.otlp.auth: no key could be loaded, so every sender would be refused")
            raise ConfigError(problems)
        for name in unset:
            settings.logger.warning("auth: environment variable %s is not set; its key is not accepted", name)

    @property
    def key_count(self) -> int:
        """How many keys are accepted right now (for start-up messages; never the keys)."""
        return len(self._env_keys) + len(self._file_keys)

    def describe(self) -> str:
        """``authorization: Bearer`` or ``x-api-key``: what a sender must send (no key material)."""
        return f"{self.header}: {self.scheme}" if self.scheme else self.header

    def verify(self, value: str | None) -> bool:
        """Whether ``value`` (the raw header value, ``None`` when absent) carries a valid key."""
        self._maybe_reload()
        credential = self._credential(value)
        if credential is None:
            return False
        valid = False
        for key in (*self._env_keys, *self._file_keys):
            # No early exit: the time taken does not depend on which key (if any) matched.
            valid |= hmac.compare_digest(credential, key)
        return valid

    def authenticate(self, value: str | None) -> None:
        """Raise :class:`UnauthenticatedError` unless :meth:`verify` accepts ``value``."""
        if not self.verify(value):
            what = "missing" if not value else "invalid"
            raise UnauthenticatedError(f"{what} credential in {self.header!r}")

    def authenticate_metadata(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """:meth:`authenticate` the value of :attr:`header` in gRPC invocation metadata."""
        value: str | None = None
        for key, item in metadata or ():
            if key == self.header and isinstance(item, str):
                value = item
                break
        self.authenticate(value)

    # ------------------------------------------------------------------ internals

    def _credential(self, value: str | None) -> bytes | None:
        if not value:
            return None
        value = value.strip()
        if self.scheme:
            parts = value.split(None, 1)
            if len(parts) != 2 or parts[0].lower() != self.scheme.lower():
                return None
            value = parts[1].strip()
        return value.encode("utf-8", "replace") if value else None

    @staticmethod
    def _read_file(path: Path) -> tuple[_FileSignature, tuple[bytes, ...]]:
        # Stat before reading: a change that lands in between is seen (and re-read) on the next check.
        stat = path.stat()
        lines = path.read_text(encoding="utf-8").splitlines()
        keys = tuple(line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino), keys

    def _maybe_reload(self) -> None:
        if self._file is None:
            return
        now = self._settings.clock.monotonic()
        if now - self._checked_at < RELOAD_INTERVAL:
            return
        self._checked_at = now
        try:
            stat = self._file.stat()
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self._file_signature:
                return
            self._file_signature, self._file_keys = self._read_file(self._file)
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"cannot read {self._file}: {getattr(exc, 'strerror', None) or type(exc).__name__}"
            if problem != self._file_problem:
                self._settings.logger.warning("auth: %s; the keys read before stay in force", problem)
                self._file_problem = problem
            return
        self._file_problem = None
        self._settings.logger.info("auth: reloaded %s (%d keys)", self._file, len(self._file_keys))


# --------------------------------------------------------------------------- TLS


def _readable(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def server_ssl_context(config: TlsServerConfig, where: str) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) from ``config``; client certificates are required (mTLS) when
    ``client_ca_file`` is set. ``where`` is the YAML path of the ``tls`` block, used in errors."""
    _readable(config.cert_file, f"{where}.cert_file")
    _readable(config.key_file, f"{where}.key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise OSError(
            f"{where}: {config.cert_file} and {config.key_file} are not a PEM certificate and its private key: {exc}"
        ) from None
    if config.client_ca_file:
        _readable(config.client_ca_file, f"{where}.client_ca_file")
        try:
            context.load_verify_locations(cafile=config.client_ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise OSError(f"{where}.client_ca_file: {config.client_ca_file} is not a PEM CA bundle: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def read_server_tls(config: TlsServerConfig, where: str) -> tuple[bytes, bytes, bytes | None]:
    """``(private key, certificate chain, client CA or None)`` as PEM bytes, validated the same way
    as :func:`server_ssl_context` (for gRPC, which takes the bytes)."""
    server_ssl_context(config, where)
    key = _readable(config.key_file, f"{where}.key_file")
    cert = _readable(config.cert_file, f"{where}.cert_file")
    client_ca = _readable(config.client_ca_file, f"{where}.client_ca_file") if config.client_ca_file else None
    return key, cert, client_ca
