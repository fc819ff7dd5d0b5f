"""Which GenAI spans get judged: trace-aware tail-sampling policies, budgets and weights.

Sampling never drops a span: it only decides which model-call spans are *judged*. Each policy is
a small class with ``evaluate(ctx) -> PolicyResult`` built from its config by the ``type`` key
(:data:`POLICY_TYPES`, plus the entry-point group ``otel_judge.sampling_policies``). Policies look
at the span, its resource, the trace's root span and any span of the trace through attribute
lookups (:class:`Lookup`), and at what the trace buffer remembered of the trace
(:class:`TraceSummary`).

Precedence, as in the Collector's ``tail_sampling``: a ``drop`` (or an inverted match) wins over
everything; otherwise the span is judged when any policy samples it; otherwise not. Budgets are a
gate after that: a span chosen while a budget is exhausted gets status ``skipped_budget``.

Every decision carries the probability with which the span was selected (for weighted averages)
and the policy that selected it.
"""

from __future__ import annotations

import enum
import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from otel_judge import semconv
from otel_judge.component import Clock
from otel_judge.config import (
    AlwaysSamplePolicyConfig,
    AndPolicyConfig,
    BooleanAttributePolicyConfig,
    BudgetPolicyConfig,
    CompositePolicyConfig,
    DropPolicyConfig,
    LatencyPolicyConfig,
    LoopGuardConfig,
    MinPerSlicePolicyConfig,
    NewVersionPolicyConfig,
    NumericAttributePolicyConfig,
    ProbabilisticPolicyConfig,
    RateLimitingPolicyConfig,
    SliceRatePolicyConfig,
    StatusCodePolicyConfig,
    StringAttributePolicyConfig,
)
from otel_judge.errors import ConfigError
from otel_judge.otlp import any_value_to_py

__all__ = [
    "POLICY_TYPES",
    "Decision",
    "Lookup",
    "Policy",
    "PolicyResult",
    "Sampler",
    "SamplingContext",
    "TraceSummary",
    "Verdict",
    "fnv1a_64",
]

_MAX_UINT64 = (1 << 64) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
ENTRY_POINT_GROUP = "otel_judge.sampling_policies"


def fnv1a_64(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MAX_UINT64
    return h


class _TraceHash:
    """The Collector's probabilistic hash: FNV-1a 64 of the salt, then the trace id, against a threshold."""

    DEFAULT_SALT = "default-hash-seed"

    def __init__(self, salt: str) -> None:
        self.salt = salt or self.DEFAULT_SALT
        self._seed = fnv1a_64(self.salt.encode())

    def below(self, trace_id: bytes, percentage: float) -> bool:
        if percentage <= 0:
            return False
        threshold = min(_MAX_UINT64, int(_MAX_UINT64 * (percentage / 100.0)))
        return fnv1a_64(trace_id, self._seed) <= threshold


# --------------------------------------------------------------------------- what policies see


@dataclass(slots=True)
class TraceSummary:
    """What the trace buffer remembers about a trace for policies (only what they ask for)."""

    root: dict[str, Any] | None = None  # root span attributes, once the root arrived
    root_resource: dict[str, Any] | None = None
    values: dict[str, set[Any]] = field(default_factory=dict)  # trace.KEY lookups: values seen on any span
    status_codes: set[int] = field(default_factory=set)  # 0 UNSET, 1 OK, 2 ERROR
    start_ns: int = 0
    end_ns: int = 0
    span_count: int = 0

    def add_span(self, span: Any, resource: Any, needs: Needs) -> None:
        self.span_count += 1
        if needs.timing:
            if span.start_time_unix_nano and (not self.start_ns or span.start_time_unix_nano < self.start_ns):
                self.start_ns = span.start_time_unix_nano
            self.end_ns = max(self.end_ns, span.end_time_unix_nano)
        if needs.status:
            self.status_codes.add(int(span.status.code))
        if needs.root and not span.parent_span_id:
            # Only the keys some policy looks up: this record lives for every trace in flight.
            keys = needs.root_keys
            self.root = {kv.key: any_value_to_py(kv.value) for kv in span.attributes if kv.key in keys}
            attrs = resource.attributes if resource is not None else ()
            self.root_resource = {kv.key: any_value_to_py(kv.value) for kv in attrs if kv.key in keys}
        if needs.trace_keys:
            for kv in span.attributes:
                if kv.key in needs.trace_keys:
                    self.values.setdefault(kv.key, set()).add(_hashable(any_value_to_py(kv.value)))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True, slots=True)
class Needs:
    """What policies need remembered about every span of a trace (not only the judged ones)."""

    root: bool = False
    trace_keys: frozenset[str] = frozenset()
    status: bool = False
    timing: bool = False
    root_keys: frozenset[str] = frozenset()  # the root span / root resource keys looked up

    @property
    def any(self) -> bool:
        return self.root or bool(self.trace_keys) or self.status or self.timing

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.root or other.root,
            self.trace_keys | other.trace_keys,
            self.status or other.status,
            self.timing or other.timing,
            self.root_keys | other.root_keys,
        )


@dataclass(slots=True)
class SamplingContext:
    """The span being decided, its resource, and its trace as remembered so far."""

    trace_id: bytes
    span: Any
    resource: Any = None
    trace: TraceSummary = field(default_factory=TraceSummary)
    now: float = 0.0
    _span_attrs: dict[str, Any] | None = None
    _resource_attrs: dict[str, Any] | None = None
    span_keys: Any = None  # the span's attribute keys, when already known (a set-like view)

    @property
    def span_attrs(self) -> dict[str, Any]:
        if self._span_attrs is None:
            self._span_attrs = {kv.key: any_value_to_py(kv.value) for kv in self.span.attributes} if self.span else {}
        return self._span_attrs

    def has_span_attribute(self, key: str) -> bool:
        """Whether the span has ``key``, without decoding any value."""
        if self._span_attrs is not None:
            return key in self._span_attrs
        if self.span_keys is not None:
            return key in self.span_keys
        return self.span is not None and any(kv.key == key for kv in self.span.attributes)

    @property
    def resource_attrs(self) -> dict[str, Any]:
        if self._resource_attrs is None:
            attrs = self.resource.attributes if self.resource is not None else ()
            self._resource_attrs = {kv.key: any_value_to_py(kv.value) for kv in attrs}
        return self._resource_attrs


_SCOPES = ("span", "resource", "root", "trace")


class Lookup:
    """An attribute lookup: ``span.KEY``, ``resource.KEY``, ``root.KEY``, ``trace.KEY``, or a bare
    ``KEY`` (span, then resource, then root span); ``a | b`` tries alternatives in order."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.alternatives: list[tuple[str | None, str]] = []
        for part in expression.split("|"):
            text = part.strip()
            scope, _, rest = text.partition(".")
            if scope in _SCOPES and rest:
                self.alternatives.append((scope, rest))
            elif text:
                self.alternatives.append((None, text))

    @property
    def needs(self) -> Needs:
        root_keys = frozenset(key for scope, key in self.alternatives if scope in ("root", None))
        keys = frozenset(key for scope, key in self.alternatives if scope == "trace")
        return Needs(root=bool(root_keys), trace_keys=keys, root_keys=root_keys)

    def values(self, ctx: SamplingContext) -> list[Any]:
        """Every value the lookup finds (several for ``trace.KEY``); the first alternative that finds any."""
        for scope, key in self.alternatives:
            found = self._find(ctx, scope, key)
            if found:
                return found
        return []

    def first(self, ctx: SamplingContext) -> Any:
        values = self.values(ctx)
        return values[0] if values else None

    @staticmethod
    def _find(ctx: SamplingContext, scope: str | None, key: str) -> list[Any]:
        if scope in ("span", None) and key in ctx.span_attrs:
            return [ctx.span_attrs[key]]
        if scope in ("resource", None) and key in ctx.resource_attrs:
            return [ctx.resource_attrs[key]]
        if scope in ("root", None) and ctx.trace.root is not None and key in ctx.trace.root:
            return [ctx.trace.root[key]]
        if scope == "root" and ctx.trace.root_resource and key in ctx.trace.root_resource:
            return [ctx.trace.root_resource[key]]
        if scope == "trace":
            found = sorted(ctx.trace.values.get(key, ()), key=repr)
            if key in ctx.span_attrs:
                found.insert(0, ctx.span_attrs[key])
            return found
        return []


# --------------------------------------------------------------------------- results


class Verdict(enum.Enum):
    SAMPLED = "sampled"
    NOT_SAMPLED = "not_sampled"
    DROPPED = "dropped"  # a drop policy or an inverted match: not judged, whatever else says


@dataclass(frozen=True, slots=True)
class PolicyResult:
    verdict: Verdict
    probability: float = 1.0  # selection probability when SAMPLED


SAMPLED = PolicyResult(Verdict.SAMPLED)
NOT_SAMPLED = PolicyResult(Verdict.NOT_SAMPLED, 0.0)
DROPPED = PolicyResult(Verdict.DROPPED, 0.0)


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict for one span: judged or not, by which policy, with what probability; ``budget``
    is true when it was chosen but a budget said no (status ``skipped_budget``)."""

    sampled: bool
    policy: str | None
    probability: float
    budget: bool = False


class Policy(Protocol):
    """One sampling rule. ``needs`` says what it reads from other spans of the trace."""

    name: str
    needs: Needs

    def evaluate(self, ctx: SamplingContext) -> PolicyResult: ...


class Observer(Protocol):
    """Policies with memory are told the final decision of every span they evaluated."""

    def observe(self, ctx: SamplingContext, sampled: bool) -> None: ...


# --------------------------------------------------------------------------- Collector-compatible policies


class AlwaysSamplePolicy:
    needs = Needs()

    def __init__(self, config: AlwaysSamplePolicyConfig, clock: Clock) -> None:
        self.name = config.name

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        return SAMPLED

    def evaluate_trace_id(self, trace_id: bytes) -> PolicyResult:
        """:meth:`evaluate` without a context: this policy reads nothing of the span."""
        return SAMPLED


class ProbabilisticPolicy:
    """Trace-id hash below a threshold: the same trace gets the same decision on every replica, and the
    same decision as the Collector's ``tail_sampling`` probabilistic policy with the same salt."""

    needs = Needs()

    def __init__(self, config: ProbabilisticPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.percentage = config.probabilistic.sampling_percentage
        self.hash = _TraceHash(config.probabilistic.hash_salt)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        return self.evaluate_trace_id(ctx.trace_id)

    def evaluate_trace_id(self, trace_id: bytes) -> PolicyResult:
        """:meth:`evaluate` without a context: this policy reads nothing but the trace id."""
        if self.hash.below(trace_id, self.percentage):
            return PolicyResult(Verdict.SAMPLED, self.percentage / 100.0)
        return NOT_SAMPLED


def _inverted(matched: bool, invert: bool) -> PolicyResult:
    if invert:
        return DROPPED if matched else SAMPLED
    return SAMPLED if matched else NOT_SAMPLED


class StringAttributePolicy:
    def __init__(self, config: StringAttributePolicyConfig, clock: Clock) -> None:
        spec = config.string_attribute
        self.name = config.name
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.invert = spec.invert_match
        self.values = frozenset(spec.values)
        self.patterns = [re.compile(v) for v in spec.values] if spec.enabled_regex_matching else None
        self._cache: OrderedDict[str, bool] = OrderedDict()
        self._cache_size = spec.cache_max_size or 1024

    def _matches(self, value: str) -> bool:
        if self.patterns is None:
            return value in self.values
        hit = self._cache.get(value)
        if hit is None:
            hit = any(p.fullmatch(value) for p in self.patterns)
            self._cache[value] = hit
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return hit

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        matched = any(isinstance(v, str) and self._matches(v) for v in self.lookup.values(ctx))
        return _inverted(matched, self.invert)


class NumericAttributePolicy:
    def __init__(self, config: NumericAttributePolicyConfig, clock: Clock) -> None:
        spec = config.numeric_attribute
        self.name = config.name
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.low = -math.inf if spec.min_value is None else spec.min_value
        self.high = math.inf if spec.max_value is None else spec.max_value
        self.invert = spec.invert_match

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        matched = any(
            isinstance(v, int | float) and not isinstance(v, bool) and self.low <= v <= self.high
            for v in self.lookup.values(ctx)
        )
        return _inverted(matched, self.invert)


class BooleanAttributePolicy:
    def __init__(self, config: BooleanAttributePolicyConfig, clock: Clock) -> None:
        spec = config.boolean_attribute
        self.name = config.name
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.value = spec.value
        self.invert = spec.invert_match

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        matched = any(v is self.value for v in self.lookup.values(ctx) if isinstance(v, bool))
        return _inverted(matched, self.invert)


_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


class StatusCodePolicy:
    needs = Needs(status=True)

    def __init__(self, config: StatusCodePolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.codes = frozenset(_STATUS[c] for c in config.status_code.status_codes)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        codes = set(ctx.trace.status_codes)
        if ctx.span is not None:
            codes.add(int(ctx.span.status.code))
        return SAMPLED if codes & self.codes else NOT_SAMPLED


class LatencyPolicy:
    needs = Needs(timing=True)

    def __init__(self, config: LatencyPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.low_ns = config.latency.threshold_ms * 1_000_000
        upper = config.latency.upper_threshold_ms
        self.high_ns = math.inf if upper is None else upper * 1_000_000

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        start, end = ctx.trace.start_ns, ctx.trace.end_ns
        if ctx.span is not None:
            start = min(start or ctx.span.start_time_unix_nano, ctx.span.start_time_unix_nano)
            end = max(end, ctx.span.end_time_unix_nano)
        duration = end - start
        return SAMPLED if self.low_ns <= duration <= self.high_ns else NOT_SAMPLED


class _Rate:
    """Events in a sliding window of ``seconds`` (with one-second resolution when seconds > 1)."""

    def __init__(self, clock: Clock, seconds: float = 1.0) -> None:
        self.clock = clock
        self.seconds = seconds
        self.events: deque[float] = deque()

    def count(self) -> int:
        horizon = self.clock.monotonic() - self.seconds + 1e-9  # an event exactly `seconds` old has left
        while self.events and self.events[0] <= horizon:
            self.events.popleft()
        return len(self.events)

    def add(self) -> None:
        self.events.append(self.clock.monotonic())


class RateLimitingPolicy:
    """Judges up to ``spans_per_second`` spans per sliding second. The probability it reports is the
    share of spans it admitted over the last minute (an estimate: rate limits have no fixed one)."""

    needs = Needs()

    def __init__(self, config: RateLimitingPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.limit = config.rate_limiting.spans_per_second
        self.admitted = _Rate(clock)
        self.seen_minute = _Rate(clock, 60)
        self.admitted_minute = _Rate(clock, 60)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        self.seen_minute.add()
        if self.admitted.count() < self.limit:
            self.admitted.add()
            self.admitted_minute.add()
            return PolicyResult(Verdict.SAMPLED, self.admitted_minute.count() / max(1, self.seen_minute.count()))
        return NOT_SAMPLED


class AndPolicy:
    def __init__(self, config: AndPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.subs = [build_policy(c, clock) for c in config.and_.and_sub_policy]
        self.needs = _union_needs(self.subs)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        probability = 1.0
        for sub in self.subs:
            result = sub.evaluate(ctx)
            if result.verdict is not Verdict.SAMPLED:  # inverted results count as plain not-sampled here
                return NOT_SAMPLED
            probability *= result.probability
        return PolicyResult(Verdict.SAMPLED, probability)


class DropPolicy:
    def __init__(self, config: DropPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.subs = [build_policy(c, clock) for c in config.drop.drop_sub_policy]
        self.needs = _union_needs(self.subs)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        if all(sub.evaluate(ctx).verdict is Verdict.SAMPLED for sub in self.subs):
            return DROPPED
        return NOT_SAMPLED


class CompositePolicy:
    """Sub-policies asked in ``policy_order`` share ``max_total_spans_per_second``: each gets its
    ``rate_allocation`` share; those without one share what the others leave."""

    def __init__(self, config: CompositePolicyConfig, clock: Clock) -> None:
        spec = config.composite
        self.name = config.name
        by_name = {c.name: c for c in spec.composite_sub_policy}
        self.subs = [build_policy(by_name[n], clock) for n in spec.policy_order]
        self.needs = _union_needs(self.subs)
        shares = {a.policy: a.percent for a in spec.rate_allocation}
        left = max(0.0, 100.0 - sum(shares.values()))
        unallocated = [n for n in spec.policy_order if n not in shares]
        self.limits = {
            n: spec.max_total_spans_per_second * (shares[n] if n in shares else left / len(unallocated)) / 100.0
            for n in spec.policy_order
        }
        self.total = spec.max_total_spans_per_second
        self.rates = {n: _Rate(clock) for n in spec.policy_order}
        self.all = _Rate(clock)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        if self.all.count() >= self.total:
            return NOT_SAMPLED
        for sub in self.subs:
            result = sub.evaluate(ctx)
            if result.verdict is Verdict.SAMPLED and self.rates[sub.name].count() < self.limits[sub.name]:
                self.rates[sub.name].add()
                self.all.add()
                return result
        return NOT_SAMPLED


# --------------------------------------------------------------------------- our policies


class SliceRatePolicy:
    """A percentage per value of a slice key (e.g. route=support 20 %, everything else 2 %)."""

    def __init__(self, config: SliceRatePolicyConfig, clock: Clock) -> None:
        spec = config.slice_rate
        self.name = config.name
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.rates = dict(spec.rates)
        self.default = spec.default_percentage
        self.hash = _TraceHash(spec.hash_salt)

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        value = self.lookup.first(ctx)
        percentage = self.rates.get(str(value), self.default) if value is not None else self.default
        if self.hash.below(ctx.trace_id, percentage):
            return PolicyResult(Verdict.SAMPLED, percentage / 100.0)
        return NOT_SAMPLED


@dataclass(slots=True)
class _Version:
    first_seen: float
    last_seen: float
    new_since: float | None  # when the value became new (None: known)
    judged: int = 0


class NewVersionPolicy:
    """A slice value not seen within ``seen_window`` (a new model, prompt version, route...) is judged
    at ``sampling_percentage`` until ``min_samples`` of it were judged or ``duration`` passed."""

    def __init__(self, config: NewVersionPolicyConfig, clock: Clock) -> None:
        spec = config.new_version
        self.name = config.name
        self.spec = spec
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.clock = clock
        self.started = clock.monotonic()
        self.hash = _TraceHash(spec.hash_salt)
        self.values: OrderedDict[str, _Version] = OrderedDict()

    def _version(self, value: str) -> _Version:
        now = self.clock.monotonic()
        version = self.values.get(value)
        if version is None or now - version.last_seen > self.spec.seen_window:
            in_grace = now - self.started < self.spec.startup_grace
            version = _Version(now, now, None if in_grace else now)
            self.values[value] = version
            if len(self.values) > self.spec.max_tracked_values:
                self.values.popitem(last=False)
        version.last_seen = now
        self.values.move_to_end(value)
        return version

    def is_new(self, value: str) -> bool:
        version = self.values.get(value)
        if version is None or version.new_since is None:
            return False
        expired = self.clock.monotonic() - version.new_since >= self.spec.duration
        return not expired and version.judged < self.spec.min_samples

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        value = self.lookup.first(ctx)
        if value is None:
            return NOT_SAMPLED
        self._version(str(value))
        if self.is_new(str(value)) and self.hash.below(ctx.trace_id, self.spec.sampling_percentage):
            return PolicyResult(Verdict.SAMPLED, self.spec.sampling_percentage / 100.0)
        return NOT_SAMPLED

    def observe(self, ctx: SamplingContext, sampled: bool) -> None:
        value = self.lookup.first(ctx)
        if sampled and value is not None and (version := self.values.get(str(value))) is not None:
            version.judged += 1


class MinPerSlicePolicy:
    """At least ``min_samples`` judged per slice per window, so rare slices still get a signal."""

    def __init__(self, config: MinPerSlicePolicyConfig, clock: Clock) -> None:
        spec = config.min_per_slice
        self.name = config.name
        self.spec = spec
        self.lookup = Lookup(spec.key)
        self.needs = self.lookup.needs
        self.clock = clock
        self.window_start = clock.monotonic()
        self.judged: dict[str, int] = {}
        self.seen: dict[str, int] = {}

    def _roll(self) -> None:
        now = self.clock.monotonic()
        if now - self.window_start >= self.spec.window:
            self.window_start += self.spec.window * ((now - self.window_start) // self.spec.window)
            self.judged.clear()
            self.seen.clear()

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        self._roll()
        key = str(self.lookup.first(ctx))
        if key not in self.seen and len(self.seen) >= self.spec.max_slices:
            return NOT_SAMPLED
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.judged.get(key, 0) < self.spec.min_samples:
            # Inclusion probability so far this window: what is judged of what was seen.
            return PolicyResult(Verdict.SAMPLED, min(1.0, (self.judged.get(key, 0) + 1) / self.seen[key]))
        return NOT_SAMPLED

    def observe(self, ctx: SamplingContext, sampled: bool) -> None:
        if sampled:
            key = str(self.lookup.first(ctx))
            if key in self.seen:
                self.judged[key] = self.judged.get(key, 0) + 1


class _Window:
    """A sum over a sliding window, in ``buckets`` buckets."""

    def __init__(self, clock: Clock, seconds: float, buckets: int = 60) -> None:
        self.clock = clock
        self.width = seconds / buckets
        self.buckets: deque[tuple[int, float]] = deque()
        self.count = buckets

    def _index(self) -> int:
        return int(self.clock.monotonic() // self.width)

    def total(self) -> float:
        oldest = self._index() - self.count + 1
        while self.buckets and self.buckets[0][0] < oldest:
            self.buckets.popleft()
        return sum(v for _, v in self.buckets)

    def add(self, value: float) -> None:
        index = self._index()
        if self.buckets and self.buckets[-1][0] == index:
            self.buckets[-1] = (index, self.buckets[-1][1] + value)
        else:
            self.buckets.append((index, value))


class BudgetPolicy:
    """Hard caps on judge spend (USD per sliding hour) and judge tokens (per sliding minute).

    Before a judgment starts, its cost is *reserved* at the largest cost one judgment has had so far
    (until the first one finishes, only one judgment may be in flight); when it finishes the real
    usage replaces the reservation. So the caps hold unless one judgment costs more than every
    earlier one.
    """

    needs = Needs()

    def __init__(self, config: BudgetPolicyConfig, clock: Clock) -> None:
        self.name = config.name
        self.usd_cap = config.budget.max_usd_per_hour
        self.token_cap = config.budget.max_tokens_per_minute
        self.usd = _Window(clock, 3600.0)
        self.tokens = _Window(clock, 60.0)
        self.reserved_usd = 0.0
        self.reserved_tokens = 0.0
        self.max_usd = 0.0
        self.max_tokens = 0.0
        self.in_flight = 0
        self.completed = 0

    def admit(self, judgments: int) -> bool:
        """Reserve room for ``judgments`` judge calls; False when a cap would be passed."""
        if self.completed == 0 and self.in_flight > 0:
            return False  # nothing known yet about what a judgment costs
        need_usd, need_tokens = self.max_usd * judgments, self.max_tokens * judgments
        if self.usd_cap is not None and self.usd.total() + self.reserved_usd + need_usd > self.usd_cap:
            return False
        if self.token_cap is not None and self.tokens.total() + self.reserved_tokens + need_tokens > self.token_cap:
            return False
        self.reserved_usd += need_usd
        self.reserved_tokens += need_tokens
        self.in_flight += judgments
        return True

    def release(self, judgments: int) -> None:
        """Give back a reservation that was not used."""
        self.in_flight = max(0, self.in_flight - judgments)
        self.reserved_usd = max(0.0, self.reserved_usd - self.max_usd * judgments)
        self.reserved_tokens = max(0.0, self.reserved_tokens - self.max_tokens * judgments)

    def settle(self, cost_usd: float | None, tokens: int) -> None:
        """One admitted judge call finished with this real usage (``None`` cost: price unknown)."""
        cost = cost_usd or 0.0
        self.in_flight = max(0, self.in_flight - 1)
        self.reserved_usd = max(0.0, self.reserved_usd - self.max_usd)
        self.reserved_tokens = max(0.0, self.reserved_tokens - self.max_tokens)
        self.usd.add(cost)
        self.tokens.add(tokens)
        self.completed += 1
        self.max_usd = max(self.max_usd, cost)
        self.max_tokens = max(self.max_tokens, float(tokens))

    def spent_usd(self) -> float:
        return self.usd.total()

    def spent_tokens(self) -> float:
        return self.tokens.total()

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:  # a gate, not a selector
        return NOT_SAMPLED


# --------------------------------------------------------------------------- loop guard


class LoopGuardPolicy:
    """Built-in drop: spans from otel-judge itself (by service.name or a marker attribute)."""

    needs = Needs()

    def __init__(self, config: LoopGuardConfig) -> None:
        self.name = "loop_guard"
        self.services = frozenset(config.service_names)
        self.marker = config.marker_attribute

    def evaluate(self, ctx: SamplingContext) -> PolicyResult:
        if ctx.resource_attrs.get(semconv.SERVICE_NAME) in self.services:
            return DROPPED
        if self.marker in ctx.resource_attrs or ctx.has_span_attribute(self.marker):
            return DROPPED
        return NOT_SAMPLED

    def drops(self, resource_attrs: Mapping[str, Any], span_keys: Any) -> bool:
        """:meth:`evaluate` is ``DROPPED``, from the resource's attributes and the span's keys."""
        return (
            resource_attrs.get(semconv.SERVICE_NAME) in self.services
            or self.marker in resource_attrs
            or self.marker in span_keys
        )


# --------------------------------------------------------------------------- registry and sampler

PolicyFactory = Callable[[Any, Clock], Policy]

POLICY_TYPES: dict[str, PolicyFactory] = {
    "always_sample": AlwaysSamplePolicy,
    "probabilistic": ProbabilisticPolicy,
    "string_attribute": StringAttributePolicy,
    "numeric_attribute": NumericAttributePolicy,
    "boolean_attribute": BooleanAttributePolicy,
    "status_code": StatusCodePolicy,
    "latency": LatencyPolicy,
    "rate_limiting": RateLimitingPolicy,
    "and": AndPolicy,
    "drop": DropPolicy,
    "composite": CompositePolicy,
    "slice_rate": SliceRatePolicy,
    "new_version": NewVersionPolicy,
    "min_per_slice": MinPerSlicePolicy,
    "budget": BudgetPolicy,
}


def build_policy(config: Any, clock: Clock) -> Policy:
    """A policy from its config; ``type: plugin`` loads ``plugin.entry_point`` from the entry-point group
    ``otel_judge.sampling_policies`` and calls it with (config, clock)."""
    if config.type == "plugin":
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == config.plugin.entry_point]
        if not found:
            available = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)) or ["none installed"]
            raise ConfigError(
                [
                    f"sampling policy {config.name!r}: no plugin {config.plugin.entry_point!r} "
                    f"(available: {', '.join(available)})"
                ]
            )
        factory: PolicyFactory = found[0].load()
    else:
        factory = POLICY_TYPES[config.type]
    try:
        return factory(config, clock)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"sampling policy {config.name!r}: {exc}"]) from None


def _union_needs(policies: Iterable[Policy]) -> Needs:
    needs = Needs()
    for policy in policies:
        needs = needs | policy.needs
    return needs


def _inclusion(results: Sequence[tuple[Policy, PolicyResult]]) -> float:
    """Probability of selection under "any policy samples": 1 - prod(1 - p) over policies whose hashes are
    independent; probabilistic policies sharing a salt share a hash, so within a salt the largest p counts."""
    by_salt: dict[str, float] = {}
    independent: list[float] = []
    for policy, result in results:
        salt = getattr(getattr(policy, "hash", None), "salt", None)
        if salt is not None:
            by_salt[salt] = max(by_salt.get(salt, 0.0), result.probability)
        else:
            independent.append(result.probability)
    miss = 1.0
    for p in [*by_salt.values(), *independent]:
        miss *= 1.0 - min(1.0, max(0.0, p))
    return 1.0 - miss


_NOT_SAMPLED_DECISION = Decision(False, None, 0.0)  # frozen: shared by every span no policy chose


class Sampler:
    """Evaluates every policy for a span and combines them (drop > sample > not sampled), then the budgets."""

    def __init__(
        self,
        policies: Sequence[Policy],
        *,
        loop_guard: LoopGuardPolicy | None = None,
        budgets: Sequence[BudgetPolicy] = (),
    ) -> None:
        self.policies = tuple(policies)
        self.loop_guard = loop_guard
        self.budgets = tuple(budgets)
        self.needs = _union_needs(self.policies)
        #: Every policy decides from the trace id alone (``evaluate_trace_id``): see decide_by_trace_id.
        self.by_trace_id = all(hasattr(p, "evaluate_trace_id") for p in self.policies)

    @classmethod
    def from_config(cls, configs: Sequence[Any], clock: Clock, loop_guard: LoopGuardConfig | None = None) -> Sampler:
        built = [build_policy(c, clock) for c in configs]
        budgets = [p for p in built if isinstance(p, BudgetPolicy)]
        selectors = [p for p in built if not isinstance(p, BudgetPolicy)]
        guard = LoopGuardPolicy(loop_guard) if loop_guard is not None and loop_guard.enabled else None
        return cls(selectors, loop_guard=guard, budgets=budgets)

    def decide(self, ctx: SamplingContext) -> Decision:
        """Which policy (if any) selects this span, and with what probability. Budgets come after,
        in :meth:`admit`, once the span is known to be judgeable."""
        if self.loop_guard is not None and self.loop_guard.evaluate(ctx).verdict is Verdict.DROPPED:
            return Decision(False, self.loop_guard.name, 0.0)
        sampled: list[tuple[Policy, PolicyResult]] | None = None  # allocated only when one samples
        dropped_by: str | None = None
        for policy in self.policies:
            result = policy.evaluate(ctx)
            verdict = result.verdict
            if verdict is Verdict.NOT_SAMPLED:  # the common case, per span on the receive path
                continue
            if verdict is Verdict.DROPPED and dropped_by is None:
                dropped_by = policy.name
            elif verdict is Verdict.SAMPLED:
                if sampled is None:
                    sampled = []
                sampled.append((policy, result))
        if dropped_by is not None:
            return Decision(False, dropped_by, 0.0)
        if sampled:
            return Decision(True, sampled[0][0].name, _inclusion(sampled))
        return _NOT_SAMPLED_DECISION

    def decide_by_trace_id(self, trace_id: bytes, resource_attrs: Mapping[str, Any], span_keys: Any) -> Decision:
        """:meth:`decide` when :attr:`by_trace_id`, without building a context: the loop guard reads the
        resource's attributes and the span's keys, the policies the trace id."""
        if self.loop_guard is not None and self.loop_guard.drops(resource_attrs, span_keys):
            return Decision(False, self.loop_guard.name, 0.0)
        sampled: list[tuple[Policy, PolicyResult]] | None = None
        for policy in self.policies:
            result = policy.evaluate_trace_id(trace_id)  # type: ignore[attr-defined]
            if result.verdict is Verdict.SAMPLED:  # these policies never drop
                if sampled is None:
                    sampled = []
                sampled.append((policy, result))
        if sampled:
            return Decision(True, sampled[0][0].name, _inclusion(sampled))
        return _NOT_SAMPLED_DECISION

    def admit(self, judgments: int) -> bool:
        """Reserve budget for ``judgments`` judge calls; False (nothing reserved) when a cap would pass."""
        admitted: list[BudgetPolicy] = []
        for budget in self.budgets:
            if not budget.admit(judgments):
                for done in admitted:
                    done.release(judgments)
                return False
            admitted.append(budget)
        return True

    def observe(self, ctx: SamplingContext, judged: bool) -> None:
        """Tell policies with memory whether the span they evaluated is being judged."""
        for policy in self.policies:
            observe = getattr(policy, "observe", None)
            if observe is not None:
                observe(ctx, judged)

    def spent_usd(self) -> float:
        return max((b.spent_usd() for b in self.budgets), default=0.0)

    def settle(self, cost_usd: float | None, tokens: int) -> None:
        """One judge call of an admitted span finished: book its real usage against the budgets."""
        for budget in self.budgets:
            budget.settle(cost_usd, tokens)
