"""What the user writes: the YAML configuration, as pydantic models that mirror it one to one.

Every model forbids unknown keys and documents every field, so ``otel-judge validate`` can list
every problem under its YAML path (``sampling.policies[2].probabilistic.sampling_percentage: ...``)
and the reference in the docs is generated from these descriptions. Where otel-judge overlaps with
the OpenTelemetry Collector (receivers, exporters, sampling policies, durations, ``${env:NAME}``),
keys and spellings are the Collector's so operators can paste blocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from otel_judge.errors import ConfigError

# --------------------------------------------------------------------------- durations

# The Collector's (Go) units, plus ``d`` for days: retention and baseline windows are counted in days.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Parse a Collector-style duration (``500ms``, ``30s``, ``1m30s``, and ``7d``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 500ms, 30s or 5m is expected")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0.0
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"{value!r} is not a duration (write it like 500ms, 30s, 5m or 1h30m)")
    else:
        raise ValueError("a duration such as 500ms, 30s or 5m is expected")
    if seconds < 0:
        raise ValueError("a duration must not be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- receivers


class TlsServerConfig(_Model):
    """Server TLS, as the Collector's ``configtls`` server settings."""

    cert_file: str = Field(description="PEM server certificate (chain).")
    key_file: str = Field(description="PEM server private key.")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."
    )


class GrpcServerConfig(_Model):
    endpoint: str = Field("127.0.0.1:4317", description="host:port the OTLP/gRPC server listens on.")
    tls: TlsServerConfig | None = Field(None, description="Serve TLS (and mTLS with client_ca_file).")
    max_recv_msg_size_mib: int = Field(
        16, gt=0, le=1024, description="Largest request accepted, in MiB; larger ones get RESOURCE_EXHAUSTED."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _check_host_port(value)


class HttpServerConfig(_Model):
    endpoint: str = Field("127.0.0.1:4318", description="host:port the OTLP/HTTP server listens on.")
    max_request_body_size: int = Field(
        20 * 1024 * 1024, gt=0, description="Largest request body accepted, in bytes (after gzip); larger: 413."
    )
    tls: TlsServerConfig | None = Field(None, description="Serve HTTPS (and mTLS with client_ca_file).")
    traces_url_path: str = Field("/v1/traces", description="Path of trace exports.")
    logs_url_path: str = Field("/v1/logs", description="Path of log exports.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _check_host_port(value)


class AuthConfig(_Model):
    """Bearer-token / API-key authentication of senders; requests without a valid key are refused
    (UNAUTHENTICATED / 401) before anything is read."""

    header: str = Field("authorization", description="Header carrying the credential (e.g. x-api-key).")
    scheme: str | None = Field(
        "Bearer", description="Expected prefix of the header value (e.g. Bearer); null for a bare API key."
    )
    keys_env: list[str] = Field(default_factory=list, description="Environment variables each holding one valid key.")
    keys_file: str | None = Field(None, description="File with one valid key per line (re-read on change).")

    @model_validator(mode="after")
    def _some_key(self) -> AuthConfig:
        if not self.keys_env and not self.keys_file:
            raise ValueError("set keys_env, keys_file or both")
        return self


class OtlpProtocolsConfig(_Model):
    grpc: GrpcServerConfig | None = Field(
        default_factory=GrpcServerConfig, description="OTLP/gRPC (TraceService and LogsService)."
    )
    http: HttpServerConfig | None = Field(
        None, description="OTLP/HTTP (/v1/traces, /v1/logs; protobuf or JSON, optionally gzip)."
    )


class OtlpReceiverConfig(_Model):
    protocols: OtlpProtocolsConfig = Field(
        default_factory=OtlpProtocolsConfig, description="Which OTLP transports to serve."
    )
    auth: AuthConfig | None = Field(None, description="Require a credential from senders (both transports).")


class ReceiversConfig(_Model):
    otlp: OtlpReceiverConfig = Field(
        default_factory=OtlpReceiverConfig, description="The OTLP receiver, as in the Collector."
    )


# --------------------------------------------------------------------------- exporters


class TlsClientConfig(_Model):
    insecure: bool = Field(False, description="Plaintext connection (no TLS).")
    ca_file: str | None = Field(None, description="PEM file of the CA that signed the server certificate.")
    cert_file: str | None = Field(None, description="PEM client certificate, for mTLS.")
    key_file: str | None = Field(None, description="PEM client key, for mTLS.")

    @model_validator(mode="after")
    def _pair(self) -> TlsClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mTLS needs both)")
        return self


class RetryConfig(_Model):
    """Capped exponential backoff with jitter; the Collector's ``retry_on_failure`` keys."""

    enabled: bool = Field(True, description="Retry retryable failures (UNAVAILABLE, RESOURCE_EXHAUSTED, ...).")
    initial_interval: Duration = Field(5.0, description="Wait before the first retry.")
    max_interval: Duration = Field(30.0, description="Upper bound of one wait.")
    max_elapsed_time: Duration = Field(300.0, description="Give up on a request after this long (0 = retry forever).")
    multiplier: float = Field(1.5, ge=1.0, description="Factor applied to the wait after each attempt.")
    randomization_factor: float = Field(
        0.5, ge=0.0, le=1.0, description="Jitter: each wait is drawn from wait*(1±factor)."
    )


class SendingQueueConfig(_Model):
    queue_size: int = Field(
        1000, gt=0, description="Export requests that may wait; beyond it receivers answer RESOURCE_EXHAUSTED."
    )
    num_consumers: int = Field(4, gt=0, le=256, description="Export requests sent concurrently.")
    max_batch_items: int = Field(
        8192, gt=0, description="Queued requests are merged into one export of at most this many items."
    )
    max_batch_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        description="...and of at most this many bytes (the Collector's default receive limit is 4 MiB); a merged "
        "export the backend refuses as too large is split and its parts sent one by one.",
    )


class OtlpExporterConfig(_Model):
    endpoint: str | None = Field(
        None,
        description="host:port (or http[s]://host:port) of the OTLP/gRPC backend. "
        "Defaults to OTEL_EXPORTER_OTLP_ENDPOINT.",
    )
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig, description="TLS settings.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every export. Merged over OTEL_EXPORTER_OTLP_HEADERS."
    )
    compression: Literal["gzip", "none"] = Field("gzip", description="Request compression.")
    timeout: Duration = Field(5.0, gt=0, description="Deadline of one export attempt.")
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig, description="Retry policy.")
    sending_queue: SendingQueueConfig = Field(default_factory=SendingQueueConfig, description="In-memory queue.")


class OtlpHttpExporterConfig(_Model):
    """OTLP/HTTP (protobuf), as the Collector's ``otlphttp`` exporter."""

    endpoint: str | None = Field(
        None,
        description="Base URL (http[s]://host:port); /v1/traces and /v1/logs are appended. Defaults to "
        "OTEL_EXPORTER_OTLP_ENDPOINT.",
    )
    traces_endpoint: str | None = Field(None, description="Full URL for traces, overriding endpoint + /v1/traces.")
    logs_endpoint: str | None = Field(None, description="Full URL for logs, overriding endpoint + /v1/logs.")
    metrics_endpoint: str | None = Field(
        None, description="Full URL for otel-judge's metrics, overriding endpoint + /v1/metrics."
    )
    tls: TlsClientConfig = Field(default_factory=TlsClientConfig, description="TLS settings (https endpoints).")
    headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with every export.")
    compression: Literal["gzip", "none"] = Field("gzip", description="Request compression.")
    timeout: Duration = Field(5.0, gt=0, description="Deadline of one export attempt.")
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig, description="Retry policy.")
    sending_queue: SendingQueueConfig = Field(default_factory=SendingQueueConfig, description="In-memory queue.")


class FileExporterConfig(_Model):
    path: str = Field(description="File that receives one OTLP/JSON request per line (Collector file format).")


class DebugExporterConfig(_Model):
    verbosity: Literal["basic", "detailed"] = Field(
        "basic", description="basic: one line per judged span; detailed: also the judge's explanation."
    )


class ExportersConfig(_Model):
    otlp: OtlpExporterConfig | None = Field(None, description="OTLP/gRPC exporter.")
    otlphttp: OtlpHttpExporterConfig | None = Field(None, description="OTLP/HTTP exporter (protobuf).")
    file: FileExporterConfig | None = Field(None, description="OTLP/JSON lines file exporter.")
    debug: DebugExporterConfig | None = Field(None, description="Compact console line per judged span.")

    @model_validator(mode="after")
    def _at_least_one(self) -> ExportersConfig:
        if self.otlp is None and self.otlphttp is None and self.file is None and self.debug is None:
            raise ValueError("configure at least one exporter (otlp, otlphttp, file or debug)")
        return self


# --------------------------------------------------------------------------- sampling


AttributeLookup = Annotated[
    str,
    Field(
        description="Attribute lookup: `span.KEY`, `resource.KEY`, `root.KEY` (the trace's root span), "
        "`trace.KEY` (any span of the trace) or a bare `KEY` (the span, then its resource, then the root "
        "span); alternatives separated by `|` are tried in order.",
        min_length=1,
    ),
]


class ProbabilisticSpec(_Model):
    sampling_percentage: float = Field(ge=0, le=100, description="Percentage of traces whose GenAI spans are judged.")
    hash_salt: str = Field(
        "", description="Salt of the trace-id hash; replicas with the same salt decide alike (Collector-compatible)."
    )


class StringAttributeSpec(_Model):
    key: AttributeLookup
    values: list[str] = Field(min_length=1, description="Values (or regular expressions) that match.")
    enabled_regex_matching: bool = Field(False, description="Treat values as regular expressions (full match).")
    cache_max_size: int | None = Field(None, gt=0, description="Size of the regex result cache (Collector key).")
    invert_match: bool = Field(
        False, description="Deprecated as in the Collector: a match means do not judge. Prefer a `drop` policy."
    )


class NumericAttributeSpec(_Model):
    key: AttributeLookup
    min_value: float | None = Field(None, description="Inclusive lower bound.")
    max_value: float | None = Field(None, description="Inclusive upper bound.")
    invert_match: bool = Field(False, description="Deprecated: a match means do not judge.")

    @model_validator(mode="after")
    def _bounds(self) -> NumericAttributeSpec:
        if self.min_value is None and self.max_value is None:
            raise ValueError("set min_value, max_value or both")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError("min_value is greater than max_value")
        return self


class BooleanAttributeSpec(_Model):
    key: AttributeLookup
    value: bool = Field(description="The value that matches.")
    invert_match: bool = Field(False, description="Deprecated: a match means do not judge.")


class StatusCodeSpec(_Model):
    status_codes: list[Literal["OK", "ERROR", "UNSET"]] = Field(
        min_length=1, description="Judge when any span of the trace has one of these status codes."
    )


class LatencySpec(_Model):
    threshold_ms: int = Field(
        ge=0, description="Judge traces lasting at least this long (earliest start to latest end)."
    )
    upper_threshold_ms: int | None = Field(None, gt=0, description="...and at most this long.")


class RateLimitingSpec(_Model):
    spans_per_second: float = Field(gt=0, description="Judged spans per second at most (sliding second).")


class SliceRateSpec(_Model):
    key: AttributeLookup
    rates: dict[str, Annotated[float, Field(ge=0, le=100)]] = Field(
        description="Percentage judged per value of the key, e.g. {support: 20}."
    )
    default_percentage: float = Field(ge=0, le=100, description="Percentage for every other value (and no value).")
    hash_salt: str = Field("", description="Salt of the trace-id hash, as for probabilistic.")


class NewVersionSpec(_Model):
    key: AttributeLookup
    sampling_percentage: float = Field(100, ge=0, le=100, description="Percentage judged while a value is new.")
    min_samples: int = Field(100, gt=0, description="A value stops being new once this many of its spans were judged.")
    duration: Duration = Field(86400.0, gt=0, description="...or once this long has passed since it appeared.")
    seen_window: Duration = Field(86400.0, gt=0, description="A value is new when it was not seen within this window.")
    startup_grace: Duration = Field(
        600.0,
        ge=0,
        description="Values first seen this soon after otel-judge starts count as known (memory is not kept "
        "across restarts).",
    )
    max_tracked_values: int = Field(10_000, gt=0, description="Values remembered at most (least recent forgotten).")
    hash_salt: str = Field("", description="Salt of the trace-id hash.")


class MinPerSliceSpec(_Model):
    key: AttributeLookup
    min_samples: int = Field(gt=0, description="Judge at least this many spans per slice per window.")
    window: Duration = Field(3600.0, gt=0, description="The window (tumbling).")
    max_slices: int = Field(10_000, gt=0, description="Slices tracked at most per window.")


class BudgetSpec(_Model):
    max_usd_per_hour: float | None = Field(
        None, gt=0, description="Judge spend over any sliding hour at most (litellm's price of the real usage)."
    )
    max_tokens_per_minute: int | None = Field(None, gt=0, description="Judge tokens over any sliding minute at most.")

    @model_validator(mode="after")
    def _one(self) -> BudgetSpec:
        if self.max_usd_per_hour is None and self.max_tokens_per_minute is None:
            raise ValueError("set max_usd_per_hour, max_tokens_per_minute or both")
        return self


class _Policy(_Model):
    name: str = Field(min_length=1, description="Policy name, reported on judged spans and in telemetry.")


class AlwaysSamplePolicyConfig(_Policy):
    type: Literal["always_sample"] = Field(description="Selects this kind: always_sample.")


class ProbabilisticPolicyConfig(_Policy):
    type: Literal["probabilistic"] = Field(description="Selects this kind: probabilistic.")
    probabilistic: ProbabilisticSpec = Field(description="Settings of the probabilistic policy.")


class StringAttributePolicyConfig(_Policy):
    type: Literal["string_attribute"] = Field(description="Selects this kind: string_attribute.")
    string_attribute: StringAttributeSpec = Field(description="Settings of the string_attribute policy.")


class NumericAttributePolicyConfig(_Policy):
    type: Literal["numeric_attribute"] = Field(description="Selects this kind: numeric_attribute.")
    numeric_attribute: NumericAttributeSpec = Field(description="Settings of the numeric_attribute policy.")


class BooleanAttributePolicyConfig(_Policy):
    type: Literal["boolean_attribute"] = Field(description="Selects this kind: boolean_attribute.")
    boolean_attribute: BooleanAttributeSpec = Field(description="Settings of the boolean_attribute policy.")


class StatusCodePolicyConfig(_Policy):
    type: Literal["status_code"] = Field(description="Selects this kind: status_code.")
    status_code: StatusCodeSpec = Field(description="Settings of the status_code policy.")


class LatencyPolicyConfig(_Policy):
    type: Literal["latency"] = Field(description="Selects this kind: latency.")
    latency: LatencySpec = Field(description="Settings of the latency policy.")


class RateLimitingPolicyConfig(_Policy):
    type: Literal["rate_limiting"] = Field(description="Selects this kind: rate_limiting.")
    rate_limiting: RateLimitingSpec = Field(description="Settings of the rate_limiting policy.")


class SliceRatePolicyConfig(_Policy):
    type: Literal["slice_rate"] = Field(description="Selects this kind: slice_rate.")
    slice_rate: SliceRateSpec = Field(description="Settings of the slice_rate policy.")


class NewVersionPolicyConfig(_Policy):
    type: Literal["new_version"] = Field(description="Selects this kind: new_version.")
    new_version: NewVersionSpec = Field(description="Settings of the new_version policy.")


class MinPerSlicePolicyConfig(_Policy):
    type: Literal["min_per_slice"] = Field(description="Selects this kind: min_per_slice.")
    min_per_slice: MinPerSliceSpec = Field(description="Settings of the min_per_slice policy.")


class BudgetPolicyConfig(_Policy):
    type: Literal["budget"] = Field(description="Selects this kind: budget.")
    budget: BudgetSpec = Field(description="Settings of the budget policy.")


LeafPolicyConfig = Annotated[
    AlwaysSamplePolicyConfig
    | ProbabilisticPolicyConfig
    | StringAttributePolicyConfig
    | NumericAttributePolicyConfig
    | BooleanAttributePolicyConfig
    | StatusCodePolicyConfig
    | LatencyPolicyConfig
    | RateLimitingPolicyConfig
    | SliceRatePolicyConfig
    | NewVersionPolicyConfig
    | MinPerSlicePolicyConfig,
    Field(discriminator="type"),
]


class PluginSpec(_Model):
    entry_point: str = Field(
        min_length=1,
        description="Name of a policy registered under the entry-point group otel_judge.sampling_policies.",
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Passed to the plugin, which validates them.")


class PluginPolicyConfig(_Policy):
    type: Literal["plugin"] = Field(description="Selects this kind: plugin.")
    plugin: PluginSpec = Field(description="Settings of the plugin policy.")


class AndSpec(_Model):
    and_sub_policy: list[LeafPolicyConfig] = Field(min_length=1, description="All must judge for this to judge.")


class DropSpec(_Model):
    drop_sub_policy: list[LeafPolicyConfig] = Field(
        min_length=1, description="When all of these match, the span is not judged, whatever else says."
    )


class RateAllocation(_Model):
    policy: str = Field(description="A sub-policy name.")
    percent: float = Field(gt=0, le=100, description="Share of max_total_spans_per_second for it.")


class CompositeSpec(_Model):
    max_total_spans_per_second: float = Field(gt=0, description="Judged spans per second for the whole composite.")
    policy_order: list[str] = Field(min_length=1, description="Sub-policy names in the order they are asked.")
    composite_sub_policy: list[LeafPolicyConfig] = Field(min_length=1, description="The sub-policies.")
    rate_allocation: list[RateAllocation] = Field(
        default_factory=list, description="Shares of the rate; sub-policies without one share what is left."
    )

    @model_validator(mode="after")
    def _names(self) -> CompositeSpec:
        names = {p.name for p in self.composite_sub_policy}
        missing = [n for n in self.policy_order if n not in names] + [
            a.policy for a in self.rate_allocation if a.policy not in names
        ]
        if missing:
            raise ValueError(f"unknown sub-policy name(s): {', '.join(missing)}")
        if sum(a.percent for a in self.rate_allocation) > 100:
            raise ValueError("rate_allocation adds up to more than 100 percent")
        return self


class AndPolicyConfig(_Policy):
    type: Literal["and"] = Field(description="Selects this kind: and.")
    and_: AndSpec = Field(alias="and", description="Settings of the and policy.")


class DropPolicyConfig(_Policy):
    type: Literal["drop"] = Field(description="Selects this kind: drop.")
    drop: DropSpec = Field(description="Settings of the drop policy.")


class CompositePolicyConfig(_Policy):
    type: Literal["composite"] = Field(description="Selects this kind: composite.")
    composite: CompositeSpec = Field(description="Settings of the composite policy.")


PolicyConfig = Annotated[
    AlwaysSamplePolicyConfig
    | ProbabilisticPolicyConfig
    | StringAttributePolicyConfig
    | NumericAttributePolicyConfig
    | BooleanAttributePolicyConfig
    | StatusCodePolicyConfig
    | LatencyPolicyConfig
    | RateLimitingPolicyConfig
    | SliceRatePolicyConfig
    | NewVersionPolicyConfig
    | MinPerSlicePolicyConfig
    | BudgetPolicyConfig
    | AndPolicyConfig
    | DropPolicyConfig
    | CompositePolicyConfig
    | PluginPolicyConfig,
    Field(discriminator="type"),
]


def _default_policies() -> list[PolicyConfig]:
    return [
        ProbabilisticPolicyConfig(
            name="baseline", type="probabilistic", probabilistic=ProbabilisticSpec(sampling_percentage=10)
        )
    ]


class LoopGuardConfig(_Model):
    enabled: bool = Field(True, description="Never judge otel-judge's own (or its judge's) spans.")
    service_names: list[str] = Field(
        default_factory=lambda: ["otel-judge"], description="Resource service.name values that are ours."
    )
    marker_attribute: str = Field(
        "otel_judge.self", description="A span or resource attribute (any value) that marks our own telemetry."
    )


class SamplingConfig(_Model):
    policies: list[PolicyConfig] = Field(
        default_factory=_default_policies,
        description="Which GenAI spans are judged. A span is judged when any policy samples it. "
        "Default: one probabilistic policy at 10%.",
    )
    max_held_spans: int = Field(
        50_000, gt=0, description="GenAI spans held (awaiting decision or judgment) at most; beyond, skipped_overload."
    )
    decision_wait: Duration = Field(
        5.0,
        ge=0,
        description="How long a trace's LLM-call spans wait after the trace's first span, so that its other "
        "spans and its content log records can arrive before the decision.",
    )
    decision_wait_after_root_received: Duration = Field(
        2.0,
        ge=0,
        description="Once the trace's root span has arrived, decide after at most this long instead.",
    )
    num_traces: int = Field(
        50_000, gt=0, description="Traces awaiting a decision at most; beyond, the oldest is decided early."
    )
    decision_cache_size: int = Field(
        100_000, ge=0, description="Decided traces remembered (LRU), so late spans follow their trace's decision."
    )
    max_held_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Bytes of held spans at most; beyond, skipped_overload."
    )
    loop_guard: LoopGuardConfig = Field(
        default_factory=LoopGuardConfig, description="A built-in drop of otel-judge's own telemetry."
    )
    max_logs_per_trace: int = Field(
        1000,
        gt=0,
        description="Content log records remembered per trace for joining; more are forwarded but not joined.",
    )

    @field_validator("policies")
    @classmethod
    def _unique_names(cls, value: list[PolicyConfig]) -> list[PolicyConfig]:
        _check_unique([p.name for p in value], "policy")
        return value


# --------------------------------------------------------------------------- judge and evaluators


PiiKind = Literal["email", "phone", "credit_card", "iban", "national_id", "secret"]
ALL_PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "credit_card", "iban", "national_id", "secret")


class JudgePricing(_Model):
    input_per_million_tokens: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million_tokens: float = Field(ge=0, description="USD per million completion tokens.")


class JudgeModelConfig(_Model):
    model: str = Field(min_length=1, description="litellm model string, e.g. anthropic/claude-3-5-haiku-20241022.")
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server.")
    api_key: SecretStr | None = Field(None, description="API key; default: the provider's usual variable.")


class CircuitBreakerConfig(_Model):
    failure_threshold: int = Field(5, gt=0, description="Consecutive failures of a model that open its breaker.")
    reset_timeout: Duration = Field(30.0, gt=0, description="How long an open breaker waits before one probe call.")


class JudgeRateLimitConfig(_Model):
    requests_per_minute: int | None = Field(None, gt=0, description="Calls per minute per judge model at most.")
    tokens_per_minute: int | None = Field(None, gt=0, description="Tokens per minute per judge model at most.")


class JudgeCacheConfig(_Model):
    ttl: Duration = Field(3600.0, ge=0, description="How long a judgment is reused for a re-delivered span (0: off).")
    max_entries: int = Field(100_000, gt=0, description="Judgments remembered at most (least recent forgotten).")
    by_content: bool = Field(
        False, description="Also reuse a judgment for identical content (prompt, completion, evaluator) within ttl."
    )


class SameFamilyConfig(_Model):
    action: Literal["mark", "alternative"] = Field(
        "mark",
        description="When the judge and the judged model are of one family (preference leakage): mark the span "
        "(otel_judge.evaluation.same_family=true), or judge it with `alternative` instead.",
    )
    alternative: JudgeModelConfig | None = Field(None, description="The judge for same-family spans.")

    @model_validator(mode="after")
    def _alternative(self) -> SameFamilyConfig:
        if self.action == "alternative" and self.alternative is None:
            raise ValueError("action alternative needs an alternative judge model")
        return self


class JudgeConfig(_Model):
    model: str | None = Field(
        None, description="litellm model string of the judge, e.g. openai/gpt-4o-mini. Unset: judging off."
    )
    api_base: str | None = Field(None, description="Base URL of an OpenAI-compatible server (vLLM, Ollama...).")
    api_key: SecretStr | None = Field(None, description="API key; default: the provider's usual variable.")
    client: Literal["auto", "litellm", "openai"] = Field(
        "auto",
        description="How judge calls are made: auto = a direct OpenAI-compatible HTTP call when the provider has "
        "that API (openai, azure, hosted_vllm, ollama, groq, ...; resolved once, ~20x less CPU than litellm), "
        "litellm otherwise; openai = always direct (an error for other providers); litellm = always litellm.",
    )
    fallbacks: list[JudgeModelConfig] = Field(
        default_factory=list, description="Judge models tried in order when the model fails or its breaker is open."
    )
    retry_on_failure: RetryConfig = Field(
        default_factory=lambda: RetryConfig(initial_interval=0.5, max_interval=5.0, max_elapsed_time=20.0),
        description="Retries of retryable judge errors (timeouts, 429, 5xx, connection); Retry-After wins.",
    )
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig, description="Per judge model: stop calling a failing model for a while."
    )
    rate_limit: JudgeRateLimitConfig = Field(
        default_factory=JudgeRateLimitConfig, description="Per judge model request and token limits."
    )
    cache: JudgeCacheConfig = Field(default_factory=JudgeCacheConfig, description="Reuse of judgments.")
    same_family: SameFamilyConfig = Field(
        default_factory=SameFamilyConfig, description="What to do when judge and judged model share a family."
    )
    max_concurrency: int = Field(64, gt=0, le=4096, description="Judge calls in flight at most.")
    queue_size: int = Field(
        10_000, gt=0, description="Judgments waiting for a worker at most; beyond, skipped_overload."
    )
    timeout: Duration = Field(30.0, gt=0, description="Deadline of one judge call (a hung call is cancelled).")
    max_hold: Duration = Field(
        60.0,
        gt=0,
        description="Longest a sampled span waits for its judgment; then it is exported with status timeout.",
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Judge sampling temperature.")
    max_tokens: int = Field(512, gt=0, description="Most tokens the judge may answer with.")
    top_p: float | None = Field(None, gt=0, le=1, description="Judge nucleus sampling.")
    redact_pii: bool = Field(
        False,
        description="Replace personal data and secrets in the content with [REDACTED:<kind>] before it is "
        "sent to the judge.",
    )
    redact_detectors: list[PiiKind] = Field(
        default_factory=lambda: list(ALL_PII_KINDS), description="Detectors used by redact_pii."
    )
    pricing: JudgePricing | None = Field(
        None,
        description="Price of the judge's tokens, for budgets and cost telemetry, when litellm does not know "
        "the model (self-hosted, fine-tuned). Default: litellm's price list.",
    )

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _client(self) -> JudgeConfig:
        if self.client == "openai":
            from otel_judge.providers import openai_compatible

            models = [self.model, *(f.model for f in self.fallbacks)]
            if not all(m is None or openai_compatible(m) for m in models):
                unknown = ", ".join(repr(m) for m in models if m is not None and not openai_compatible(m))
                raise ValueError(
                    f"client openai needs providers with an OpenAI-compatible API; {unknown} has none known "
                    "(use client: auto or litellm)"
                )
        return self


Role = Literal["system", "assistant", "tool"]


class ScoreEvaluatorConfig(_Model):
    name: str = Field(description="Evaluator name: attribute prefix gen_ai.evaluation.<name>.")
    type: Literal["score"] = Field(description="Selects this kind: score.")
    threshold: float = Field(50, ge=1, le=100, description="Label pass at or above this score, fail below.")
    prompt: str | None = Field(None, description="System prompt of the judge; default: a 1-100 quality rubric.")
    history_depth: int = Field(
        5, ge=0, description="Earlier messages shown to the judge besides the last user message."
    )
    ignore_roles: list[Role] = Field(default_factory=list, description="Message roles left out of what the judge sees.")
    max_content_chars: int = Field(
        20_000, ge=200, description="Longest content sent to the judge; longer content is truncated with a marker."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_evaluator_name(value)


class _LlmEvaluator(_Model):
    """Settings every LLM-judged evaluator shares."""

    name: str = Field(description="Evaluator name: attribute prefix gen_ai.evaluation.<name>.")
    prompt: str | None = Field(None, description="System prompt of the judge; default: the type's built-in rubric.")
    history_depth: int = Field(
        5, ge=0, description="Earlier messages shown to the judge besides the last user message."
    )
    ignore_roles: list[Role] = Field(default_factory=list, description="Message roles left out of what the judge sees.")
    max_content_chars: int = Field(
        20_000, ge=200, description="Longest content sent to the judge; longer content is truncated with a marker."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_evaluator_name(value)


class RubricCriterion(_Model):
    name: str = Field(description="Criterion name (attribute infix gen_ai.evaluation.<evaluator>.<criterion>).")
    description: str = Field(min_length=1, description="What the judge checks for this criterion.")
    min: int = Field(1, description="Lowest score of the criterion's scale.")
    max: int = Field(5, description="Highest score of the criterion's scale.")
    weight: float = Field(1.0, gt=0, description="Weight of the criterion in the aggregate.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_evaluator_name(value)

    @model_validator(mode="after")
    def _scale(self) -> RubricCriterion:
        if self.min >= self.max:
            raise ValueError("min must be below max")
        return self


class RubricEvaluatorConfig(_LlmEvaluator):
    """Several named criteria scored in one judge call; the aggregate is the weighted mean of the
    criteria normalised to 0..1."""

    type: Literal["rubric"] = Field(description="Selects this kind: rubric.")
    criteria: list[RubricCriterion] = Field(min_length=1, description="The criteria.")
    threshold: float = Field(0.6, ge=0, le=1, description="Label pass when the 0..1 aggregate is at or above this.")

    @field_validator("criteria")
    @classmethod
    def _unique(cls, value: list[RubricCriterion]) -> list[RubricCriterion]:
        _check_unique([c.name for c in value], "criterion")
        return value


class ClassifyEvaluatorConfig(_LlmEvaluator):
    """The judge picks one label from a fixed set; each label maps to a score."""

    type: Literal["classify"] = Field(description="Selects this kind: classify.")
    question: str = Field(
        "Is the assistant's final response correct and does it answer the user's request?",
        min_length=1,
        description="What the judge classifies.",
    )
    labels: dict[str, float] = Field(
        default_factory=lambda: {"correct": 1.0, "partially_correct": 0.5, "incorrect": 0.0},
        min_length=2,
        description="Label -> score.",
    )
    pass_labels: list[str] = Field(default_factory=lambda: ["correct"], description="Labels that count as pass.")

    @model_validator(mode="after")
    def _passes(self) -> ClassifyEvaluatorConfig:
        unknown = [label for label in self.pass_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"pass_labels not among labels: {', '.join(unknown)}")
        return self


class CotEvaluatorConfig(_LlmEvaluator):
    """Chain of thought: the judge reasons first, then scores 1-100; the reasoning is the explanation."""

    type: Literal["cot"] = Field(description="Selects this kind: cot.")
    threshold: float = Field(50, ge=1, le=100, description="Label pass at or above this score.")
    max_reasoning_chars: int = Field(2000, ge=100, description="Reasoning kept as the explanation, at most.")


class PanelEvaluatorConfig(_LlmEvaluator):
    """The same 1-100 question to several judge models, aggregated; the disagreement is exported."""

    type: Literal["panel"] = Field(description="Selects this kind: panel.")
    judges: list[JudgeModelConfig] = Field(min_length=2, max_length=5, description="The panel's judge models.")
    aggregate: Literal["mean", "median", "majority"] = Field(
        "median", description="How the judges' scores are combined (majority: of pass/fail labels)."
    )
    mode: Literal["independent", "debate"] = Field(
        "independent",
        description="debate: one more round in which each judge sees the others' reasoning (in random order) "
        "and may revise; scores before and after are reported.",
    )
    threshold: float = Field(50, ge=1, le=100, description="Label pass at or above this score.")
    min_judges: int = Field(2, ge=1, description="Judges that must answer for a result.")


class _Check(_Model):
    name: str = Field(description="Evaluator name: attribute prefix gen_ai.evaluation.<name>.")
    gate: bool = Field(
        False, description="When this check fails, the LLM evaluators are not run for the span (status gated)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_evaluator_name(value)


class JsonValidEvaluatorConfig(_Check):
    """The completion is JSON (optionally valid against a JSON Schema)."""

    type: Literal["json_valid"] = Field(description="Selects this kind: json_valid.")
    json_schema: dict[str, Any] | None = Field(None, description="JSON Schema the completion must satisfy.")
    strip_code_fence: bool = Field(True, description="Accept JSON inside a ```json fence.")


class LengthEvaluatorConfig(_Check):
    """The completion's length is within bounds."""

    type: Literal["length"] = Field(description="Selects this kind: length.")
    min_chars: int | None = Field(None, ge=0, description="Fewer characters fail.")
    max_chars: int | None = Field(None, gt=0, description="More characters fail.")

    @model_validator(mode="after")
    def _bounds(self) -> LengthEvaluatorConfig:
        if self.min_chars is None and self.max_chars is None:
            raise ValueError("set min_chars, max_chars or both")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise ValueError("min_chars is greater than max_chars")
        return self


DEFAULT_REFUSAL_PHRASES = (
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i'm unable to",
    "i am unable to",
    "as an ai language model",
    "i won't be able to",
)


class RefusalEvaluatorConfig(_Check):
    """The completion refuses (fails when a phrase is found, case-insensitive)."""

    type: Literal["refusal"] = Field(description="Selects this kind: refusal.")
    phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES), min_length=1, description="Refusal phrases."
    )


class RegexEvaluatorConfig(_Check):
    """The completion must match (or must not match) regular expressions (searched, not full-matched)."""

    type: Literal["regex"] = Field(description="Selects this kind: regex.")
    must_match: list[str] = Field(default_factory=list, description="Every one of these must be found.")
    must_not_match: list[str] = Field(default_factory=list, description="None of these may be found.")

    @model_validator(mode="after")
    def _some(self) -> RegexEvaluatorConfig:
        if not self.must_match and not self.must_not_match:
            raise ValueError("set must_match, must_not_match or both")
        for pattern in [*self.must_match, *self.must_not_match]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return self


class PiiEvaluatorConfig(_Check):
    """Personal data or secrets in the content (fails when any is found; the values are never exported)."""

    type: Literal["pii"] = Field(description="Selects this kind: pii.")
    detectors: list[PiiKind] = Field(
        default_factory=lambda: list(ALL_PII_KINDS), min_length=1, description="Which detectors run."
    )
    scope: Literal["output", "input", "both"] = Field("output", description="Which side of the call is checked.")


EvaluatorConfig = Annotated[
    ScoreEvaluatorConfig
    | RubricEvaluatorConfig
    | ClassifyEvaluatorConfig
    | CotEvaluatorConfig
    | PanelEvaluatorConfig
    | JsonValidEvaluatorConfig
    | LengthEvaluatorConfig
    | RefusalEvaluatorConfig
    | RegexEvaluatorConfig
    | PiiEvaluatorConfig,
    Field(discriminator="type"),
]


def _default_evaluators() -> list[EvaluatorConfig]:
    return [ScoreEvaluatorConfig(name="quality", type="score")]


class ReaderConfig(_Model):
    nested_calls: Literal["innermost", "outermost"] = Field(
        "innermost",
        description="When nested spans carry the same model call (an SDK's wrapper span and its model-call "
        "span, a double instrumentation), which one is judged: the innermost (nearest the provider) or the "
        "outermost (e.g. Vercel AI SDK's ai.generateText instead of each doGenerate).",
    )
    formats: list[str] | None = Field(
        None,
        description="Only these content readers (by name: litellm, vercel_ai, openinference, openllmetry_indexed, "
        "otel_genai, or a plugin's); default all, plugins first.",
    )


class MetricsOutputConfig(_Model):
    otlp: bool = Field(
        True,
        description="Export otel-judge's metrics (score histograms per evaluator and slice, evaluation counts by "
        "status, pass rate, judge latency, tokens and cost, and its own health) over OTLP through the configured "
        "otlp / otlphttp exporters. The same values are served at /metrics when service.health.metrics is on.",
    )
    interval: Duration = Field(60.0, gt=0, description="How often metrics are exported over OTLP.")
    cardinality_limit: int = Field(
        100,
        ge=1,
        description="Distinct values kept per slice attribute on evaluation metrics; further values are recorded "
        "under 'other' and counted (otel_judge.metrics.overflow).",
    )


class OutputsConfig(_Model):
    span_attributes: bool = Field(
        True, description="gen_ai.evaluation.<name>.score.value / .score.label / .explanation on the judged span."
    )
    span_events: bool = Field(
        True,
        description="A gen_ai.evaluation.result span event per score on the judged span (name, score value and "
        "label, explanation, gen_ai.response.id), as the GenAI conventions define it.",
    )
    log_records: bool = Field(
        False,
        description="An OTLP log record per score, the GenAI conventions' gen_ai.evaluation.result event (event "
        "name, trace and span id of the judged span, the same attributes), exported with the logs.",
    )
    late_results: bool = Field(
        True,
        description="A judgment that finishes after judge.max_hold, when its span is already exported, is still "
        "emitted: as the log record and as a child span 'gen_ai.evaluation <name>' of the judged span.",
    )
    metrics: MetricsOutputConfig = Field(
        default_factory=MetricsOutputConfig, description="Evaluation and self-telemetry metrics."
    )


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of otel-judge (the environment variable OTEL_JUDGE_LOG_LEVEL overrides it)."
    )
    format: Literal["json", "text"] = Field(
        "json",
        description="json: one JSON object per line with the ids of what it is about (trace_id, span_id, "
        "evaluation_id, correlation_id); text: the same, human-readable.",
    )
    include_content: bool = Field(
        False,
        description="Allow prompt and completion text (and judge error bodies, which may quote them) in "
        "otel-judge's own logs. For debugging only.",
    )
    correlation_header: str = Field(
        "x-request-id",
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="Request header (gRPC metadata key) whose value is logged as correlation_id with what "
        "otel-judge logs while handling that export request.",
    )


class HealthConfig(_Model):
    metrics: bool = Field(True, description="Also serve otel-judge's own metrics at /metrics (Prometheus text format).")
    endpoint: str = Field(
        "127.0.0.1:13133",
        description="host:port of /healthz (liveness) and /readyz (readiness), as the "
        "Collector's health_check extension.",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _check_host_port(value)


class ServiceConfig(_Model):
    logs: LoggingConfig = Field(default_factory=LoggingConfig, description="otel-judge's own logs.")
    health: HealthConfig | None = Field(
        None, description="HTTP health endpoints (the gRPC health service is always on the OTLP/gRPC port)."
    )
    shutdown_grace: Duration = Field(
        10.0, ge=0, description="On SIGTERM: how long to let judgments finish and flush before exiting."
    )


class StorageConfig(_Model):
    directory: str = Field(
        description="Directory of the persistent queue. Export requests are written here durably before the "
        "receiver acknowledges them and removed once everything in them was accepted downstream; on start, what "
        "is left is sent through the pipeline again (at-least-once)."
    )
    max_size_mib: int = Field(
        2048, ge=1, description="Upper bound of the queue on disk; beyond it receivers answer RESOURCE_EXHAUSTED / 429."
    )
    group_commit_window: Duration = Field(
        0.002,
        ge=0,
        description="How long a write may wait to share its fsync with others (group commit); 0 = no waiting, "
        "still batching what arrives while an fsync runs.",
    )


class StoreConfig(_Model):
    url: str = Field(
        description="SQLAlchemy URL of the evaluation store: sqlite:///PATH (embedded, the default choice) or "
        "postgresql+asyncpg://USER@HOST/DB (several replicas sharing one view)."
    )
    retention: Duration = Field(30 * 86400.0, gt=0, description="Evaluations older than this are deleted.")
    max_explanation_chars: int = Field(
        1000, ge=0, description="Explanations are stored cut to this length (0: explanations are not stored)."
    )
    postgres_schema: str | None = Field(
        None,
        description="PostgreSQL only: the schema holding the store's tables (created when absent), e.g. to keep "
        "several deployments apart in one database. Default: the connection's search_path (public).",
    )
    queue_size: int = Field(
        10_000,
        gt=0,
        description="Evaluations waiting to be written at most; beyond, new ones are dropped from the store "
        "(counted in otel_judge.store.dropped; spans are not affected).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _STORE_SCHEMES:
            raise ValueError(
                f"{scheme or value!r} is not a supported store URL: use sqlite:///PATH (a file; "
                "sqlite:////abs/path for an absolute one) or postgresql+asyncpg://USER@HOST:PORT/DB"
            )
        return value

    @field_validator("postgres_schema")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("use lower-case letters, digits and _ (at most 63)")
        return value

    @model_validator(mode="after")
    def _schema_needs_postgres(self) -> StoreConfig:
        if self.postgres_schema is not None and not self.url.startswith("postgres"):
            raise ValueError("postgres_schema is for a postgresql URL")
        return self


_STORE_SCHEMES = frozenset({"sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"})


class QualityApiConfig(_Model):
    endpoint: str = Field("127.0.0.1:8787", description="host:port of the HTTP JSON quality API (GET /v1/quality).")
    grpc_endpoint: str | None = Field(
        None, description="host:port of the gRPC quality service (otel_judge.quality.v1.QualityService); off if unset."
    )

    @field_validator("endpoint", "grpc_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_host_port(value)


class RegressionConfig(_Model):
    interval: Duration = Field(30.0, gt=0, description="How often the detector runs.")
    current_window: Duration = Field(3600.0, gt=0, description="The window whose quality is tested.")
    baseline_window: Duration = Field(
        7 * 86400.0, gt=0, description="The window before the current one that it is compared with."
    )
    min_n: int = Field(30, ge=2, description="Judged spans needed in each window before a slice is tested.")
    min_effect: float = Field(
        0.05,
        ge=0,
        description="Smallest drop of the mean that alerts, as a fraction of the score scale (0.05 = 5 points "
        "on a 0-100 scale).",
    )
    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level, before the correction.")
    test: Literal["welch", "mannwhitney"] = Field("welch", description="The two-sample test.")
    correction: Literal["holm", "bonferroni", "none"] = Field(
        "holm", description="Correction for the number of slices and evaluators tested in one run."
    )
    slice_sets: list[list[str]] | None = Field(
        None,
        description="Slice combinations the window comparison tests, each a list of slice names ([] = all of an "
        "evaluator's traffic; a row lacking one of the names is not in that combination). Default: all traffic, "
        "each slice alone, and all slices together.",
    )
    route_slice: str | None = Field(
        "route",
        description="The slice that names a route: a change of a change_slices value within one route (a new "
        "model or prompt version) is tested before vs after. null: no change detection.",
    )
    change_slices: list[str] = Field(
        default_factory=lambda: ["model", "prompt_version"],
        description="Slices whose change within a route is tested (the first time a new value appears is the "
        "change point). Names that are not configured slices are ignored unless set here explicitly.",
    )


class WebhookAlertConfig(_Model):
    type: Literal["webhook"]
    url: str = Field(description="Where alerts are POSTed as JSON.")
    format: Literal["json", "slack"] = Field(
        "json", description="json: the alert object; slack: a Slack-compatible {text, blocks} payload."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (e.g. Authorization).")
    timeout: Duration = Field(5.0, gt=0, description="Per-request timeout; failed deliveries are retried.")
    retry_on_failure: RetryConfig = Field(
        default_factory=RetryConfig,
        description="Retry policy of a delivery that failed (connection error, timeout, 429 or 5xx).",
    )


class LogAlertConfig(_Model):
    type: Literal["log"]


class OtlpAlertConfig(_Model):
    type: Literal["otlp"] = Field(description="An OTLP log record (event otel_judge.quality.alert) per alert.")


class MetricAlertConfig(_Model):
    type: Literal["metric"] = Field(description="The gauge otel_judge.quality.regression (1 while firing).")


AlertConfig = Annotated[
    WebhookAlertConfig | LogAlertConfig | OtlpAlertConfig | MetricAlertConfig, Field(discriminator="type")
]


# Query parameters of GET /v1/quality besides the slices: no slice may be named like one.
QUALITY_API_PARAMETERS = frozenset({"evaluator", "window", "score"})


def _default_slices() -> dict[str, str]:
    return {
        "model": "gen_ai.response.model | gen_ai.request.model",
        "route": "root.http.route",
        "prompt_version": "gen_ai.prompt.version | llm.prompt_template.version",
        "service": "resource.service.name",
    }


class QualityConfig(_Model):
    slices: dict[str, str] = Field(
        default_factory=_default_slices,
        description="Slice name -> attribute lookup (the sampling policies' syntax: span./resource./root. "
        "prefixes, | for alternatives). Slices label the store's rows and the evaluation metrics.",
    )
    api: QualityApiConfig | None = Field(None, description="The quality API for routers; off if unset.")
    regression: RegressionConfig = Field(
        default_factory=RegressionConfig, description="The regression detector (runs when a store is configured)."
    )
    alerts: list[AlertConfig] = Field(default_factory=list, description="Where regression alerts go.")

    @field_validator("slices")
    @classmethod
    def _slice_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"slice name {name!r}: use lower-case letters, digits and _")
            if name in QUALITY_API_PARAMETERS:
                raise ValueError(f"slice name {name!r} is a parameter of the quality API; choose another")
        return value

    @model_validator(mode="after")
    def _regression_slices(self) -> QualityConfig:
        regression = self.regression
        explicit = regression.model_fields_set
        sets = regression.slice_sets or []
        named = [(f"regression.slice_sets[{i}]", name) for i, names in enumerate(sets) for name in names]
        if "route_slice" in explicit and regression.route_slice is not None:
            named.append(("regression.route_slice", regression.route_slice))
        if "change_slices" in explicit:
            named += [(f"regression.change_slices[{i}]", n) for i, n in enumerate(regression.change_slices)]
        unknown = [f"{where}: {name!r}" for where, name in named if name not in self.slices]
        if unknown:
            raise ValueError(
                "not a configured slice (quality.slices has " + ", ".join(self.slices) + "): " + "; ".join(unknown)
            )
        return self


class Config(_Model):
    """The whole configuration file."""

    receivers: ReceiversConfig = Field(default_factory=ReceiversConfig, description="Where telemetry comes in.")
    exporters: ExportersConfig = Field(description="Where telemetry goes out (at least one).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Which GenAI spans are judged.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The judge model and its worker pool.")
    evaluators: list[EvaluatorConfig] = Field(
        default_factory=_default_evaluators, description="What the judge scores; default one score evaluator 'quality'."
    )
    reader: ReaderConfig = Field(default_factory=ReaderConfig, description="How GenAI content is read from spans.")
    outputs: OutputsConfig = Field(default_factory=OutputsConfig, description="Where judgments are written.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="otel-judge's own behaviour.")
    storage: StorageConfig | None = Field(
        None,
        description="Persistent queue (at-least-once across restarts and crashes). Unset: in memory, and what is "
        "in flight is lost on a crash.",
    )
    store: StoreConfig | None = Field(None, description="The evaluation store (quality over time); off if unset.")
    quality: QualityConfig = Field(
        default_factory=QualityConfig, description="Slices, regression detection, alerts and the quality API."
    )

    @field_validator("evaluators")
    @classmethod
    def _unique_evaluators(cls, value: list[EvaluatorConfig]) -> list[EvaluatorConfig]:
        _check_unique([e.name for e in value], "evaluator")
        return value

    @model_validator(mode="after")
    def _not_to_itself(self) -> Config:
        """Exporting to our own receiver would loop every span forever."""
        protocols = self.receivers.otlp.protocols
        pairs = [
            ("otlp", self.exporters.otlp.endpoint if self.exporters.otlp else None, protocols.grpc),
            ("otlphttp", self.exporters.otlphttp.endpoint if self.exporters.otlphttp else None, protocols.http),
        ]
        for name, endpoint, server in pairs:
            if endpoint and server is not None:
                target = endpoint.split("://", 1)[-1].split("/", 1)[0]
                if _same_listener(target, server.endpoint):
                    raise ValueError(
                        f"exporters.{name}.endpoint {endpoint!r} is otel-judge's own receiver "
                        f"({server.endpoint}): it would export to itself"
                    )
        return self

    @model_validator(mode="after")
    def _quality_api_needs_store(self) -> Config:
        if self.quality.api is not None and self.store is None:
            raise ValueError("quality.api reads the evaluation store: configure store.url too")
        return self

    @property
    def judging_enabled(self) -> bool:
        return self.judge.model is not None and bool(self.evaluators)


# --------------------------------------------------------------------------- helpers


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return value


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::", "[::]", "::1", "[::1]", ""})


def _same_listener(target: str, listen: str) -> bool:
    t_host, _, t_port = target.rpartition(":")
    l_host, _, l_port = listen.rpartition(":")
    if not t_port.isdigit() or t_port != l_port or l_port == "0":
        return False
    return t_host == l_host or (t_host in _LOCAL_HOSTS and l_host in _LOCAL_HOSTS)


def _check_evaluator_name(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise ValueError("use lower-case letters, digits and _ (it becomes part of attribute names)")
    return value


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is used twice")
        seen.add(name)


# --------------------------------------------------------------------------- loading

_ENV_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(node: Any, env: Mapping[str, str], missing: list[str], path: str = "") -> Any:
    """Replace ``${env:NAME}``, ``${NAME}`` and ``${env:NAME:-default}`` in every string value.

    ``$$`` stands for a literal ``$``. An unset variable without a default becomes an empty string,
    as in the Collector; its name and path are appended to ``missing`` so the caller can warn.
    A value that is nothing but one reference is re-read as YAML, so ``${env:PORT}`` can be a number.
    """
    if isinstance(node, dict):
        return {k: substitute_env(v, env, missing, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, missing, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(f"{path}: environment variable {name} is not set")
        return ""

    whole = _ENV_REF.fullmatch(node)
    result = _ENV_REF.sub(repl, node)
    if whole and whole.group(0) != "$$" and result:
        try:
            parsed = yaml.safe_load(result)
        except yaml.YAMLError:
            return result
        if isinstance(parsed, int | float | bool):
            return parsed
    return result


def _yaml_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic error location as a YAML path, dropping discriminator tags."""
    parts: list[str] = []
    node = data
    tag_pending = isinstance(data, dict) and "type" in data
    for element in loc:
        if tag_pending and isinstance(node, dict) and node.get("type") == element:
            tag_pending = False  # the tag pydantic inserts for a discriminated union member
            continue
        if isinstance(element, int):
            parts.append(f"[{element}]")
            node = node[element] if isinstance(node, list) and element < len(node) else None
        else:
            parts.append(f".{element}" if parts else element)
            node = node.get(element) if isinstance(node, dict) else None
        tag_pending = isinstance(node, dict) and "type" in node
    return "".join(parts) or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind == "union_tag_invalid":
        return f"unknown type {ctx.get('tag')!r} (expected one of: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "missing 'type'"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def validate_config(data: Any, notes: list[str] | None = None) -> Config:
    """Validate parsed YAML; raise :class:`ConfigError` listing every problem by YAML path.

    ``notes`` (unset environment variables) are added to the problems when validation fails.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): a mapping of sections (receivers, exporters, ...) is expected"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_yaml_path(e['loc'], data)}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(problems + list(notes or [])) from None


def apply_env_defaults(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Fill exporter settings from the standard ``OTEL_EXPORTER_OTLP_*`` variables where unset."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    headers_env = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    exporters = data.get("exporters")
    if not isinstance(exporters, dict):
        return data
    exporters = dict(exporters)
    if isinstance(exporters.get("otlp"), dict):
        otlp = dict(exporters["otlp"])
        if not otlp.get("endpoint") and endpoint:
            otlp["endpoint"] = endpoint
            if endpoint.startswith("http://") and "tls" not in otlp:
                otlp["tls"] = {"insecure": True}
        if headers_env:
            otlp["headers"] = {**parse_headers_env(headers_env), **(otlp.get("headers") or {})}
        exporters["otlp"] = otlp
    if isinstance(exporters.get("otlphttp"), dict):
        # OTLP/HTTP: the base endpoint (the SDK appends /v1/traces to it); the _TRACES_ form is a full
        # URL already, so it fills traces_endpoint.
        http = dict(exporters["otlphttp"])
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not http.get("endpoint") and base:
            http["endpoint"] = base
        if not http.get("traces_endpoint") and not http.get("endpoint") and traces:
            http["traces_endpoint"] = traces
        if headers_env:
            http["headers"] = {**parse_headers_env(headers_env), **(http.get("headers") or {})}
        exporters["otlphttp"] = http
    return {**data, "exporters": exporters}


def parse_headers_env(value: str) -> dict[str, str]:
    """Parse ``OTEL_EXPORTER_OTLP_HEADERS`` (``k1=v1,k2=v2``, values URL-encoded)."""
    headers: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip():
            headers[unquote(key.strip()).lower()] = unquote(val.strip())
    return headers


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """Read, substitute and validate a config file. Returns the config and warnings."""
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return load_config_text(text, env)


def load_config_text(text: str, env: Mapping[str, str]) -> tuple[Config, list[str]]:
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "YAML"
        raise ConfigError([f"{where}: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"YAML: {exc}"]) from None
    warnings: list[str] = []
    data = substitute_env(raw, env, warnings)
    if isinstance(data, dict):
        data = apply_env_defaults(data, env)
    return validate_config(data, warnings), warnings


def default_config(env: Mapping[str, str], output_path: str = "otel-judge-output.jsonl") -> Config:
    """The embedded default a newcomer gets with no config file.

    Receives on 127.0.0.1:4317 (OTLP/gRPC) and 127.0.0.1:4318 (OTLP/HTTP); judges every GenAI span
    when ``OTEL_JUDGE_MODEL`` names a judge;
    exports to ``OTEL_EXPORTER_OTLP_ENDPOINT`` when set, otherwise to a JSON-lines file plus a
    console line per judged span.
    """
    data: dict[str, Any] = {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}, "http": {"endpoint": "127.0.0.1:4318"}}}
        },
        "sampling": {
            "policies": [{"name": "all", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}]
        },
        "judge": {"model": env.get("OTEL_JUDGE_MODEL") or None, "api_base": env.get("OTEL_JUDGE_API_BASE") or None},
    }
    if env.get("OTEL_JUDGE_API_KEY"):
        data["judge"]["api_key"] = env["OTEL_JUDGE_API_KEY"]
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        data["exporters"] = {"otlp": {}}
    else:
        data["exporters"] = {"file": {"path": output_path}, "debug": {"verbosity": "basic"}}
    return validate_config(apply_env_defaults(data, env))
