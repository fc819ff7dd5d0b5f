"""Sampling policies: table-driven per policy with an injected clock, precedence, weights, caps."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import TypeAdapter

from otel_judge.component import FakeClock
from otel_judge.config import LoopGuardConfig, PolicyConfig
from otel_judge.otlp import set_attribute
from otel_judge.sampling import Sampler, SamplingContext, TraceSummary, Verdict, build_policy, fnv1a_64

POLICY = TypeAdapter(PolicyConfig)


def policy(config: dict[str, Any], clock: FakeClock | None = None) -> Any:
    return build_policy(POLICY.validate_python(config), clock or FakeClock())


def ctx(
    trace_id: bytes = b"\x01" * 16,
    *,
    span: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    root: dict[str, Any] | None = None,
    trace_values: dict[str, set[Any]] | None = None,
    status: int = 0,
    statuses: set[int] | None = None,
    duration_ms: int = 100,
) -> SamplingContext:
    s = Span(
        name="chat",
        trace_id=trace_id,
        span_id=b"\x02" * 8,
        start_time_unix_nano=1_000_000_000,
        end_time_unix_nano=1_000_000_000 + duration_ms * 1_000_000,
        status=Status(code=status),
    )
    for key, value in (span or {}).items():
        set_attribute(s.attributes, key, value)
    r = Resource()
    for key, value in (resource or {}).items():
        set_attribute(r.attributes, key, value)
    summary = TraceSummary(root=root, values=trace_values or {}, status_codes=statuses or set())
    return SamplingContext(trace_id, s, r, summary)


def verdict(p: Any, c: SamplingContext) -> str:
    return str(p.evaluate(c).verdict.value)


ROUTE = {
    "name": "r",
    "type": "string_attribute",
    "string_attribute": {"key": "root.http.route", "values": ["/support"]},
}

CASES = [
    # (id, policy config, context kwargs, expected verdict)
    ("always", {"name": "a", "type": "always_sample"}, {}, "sampled"),
    (
        "string-exact-span",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "gen_ai.request.model", "values": ["gpt-4o"]},
        },
        {"span": {"gen_ai.request.model": "gpt-4o"}},
        "sampled",
    ),
    (
        "string-exact-miss",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "gen_ai.request.model", "values": ["gpt-4o"]},
        },
        {"span": {"gen_ai.request.model": "gpt-4o-mini"}},
        "not_sampled",
    ),
    (
        "string-regex",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "gen_ai.request.model", "values": ["gpt-4o.*"], "enabled_regex_matching": True},
        },
        {"span": {"gen_ai.request.model": "gpt-4o-mini"}},
        "sampled",
    ),
    (
        "string-regex-full-match-only",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "m", "values": ["gpt"], "enabled_regex_matching": True},
        },
        {"span": {"m": "gpt-4o"}},
        "not_sampled",
    ),
    (
        "string-invert-match-drops",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "service.name", "values": ["batch"], "invert_match": True},
        },
        {"resource": {"service.name": "batch"}},
        "dropped",
    ),
    (
        "string-invert-no-match-samples",
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "service.name", "values": ["batch"], "invert_match": True},
        },
        {"resource": {"service.name": "web"}},
        "sampled",
    ),
    (
        "bare-key-falls-back-to-resource",
        {"name": "s", "type": "string_attribute", "string_attribute": {"key": "service.name", "values": ["web"]}},
        {"resource": {"service.name": "web"}},
        "sampled",
    ),
    ("root-route", ROUTE, {"root": {"http.route": "/support"}}, "sampled"),
    ("root-route-not-arrived", ROUTE, {}, "not_sampled"),
    (
        "trace-any-span",
        {"name": "t", "type": "string_attribute", "string_attribute": {"key": "trace.db.system", "values": ["redis"]}},
        {"trace_values": {"db.system": {"postgresql", "redis"}}},
        "sampled",
    ),
    (
        "alternatives",
        {
            "name": "v",
            "type": "string_attribute",
            "string_attribute": {"key": "gen_ai.prompt.version | llm.prompt_template.version", "values": ["v2"]},
        },
        {"span": {"llm.prompt_template.version": "v2"}},
        "sampled",
    ),
    (
        "numeric-in-range",
        {
            "name": "n",
            "type": "numeric_attribute",
            "numeric_attribute": {"key": "gen_ai.usage.output_tokens", "min_value": 500},
        },
        {"span": {"gen_ai.usage.output_tokens": 900}},
        "sampled",
    ),
    (
        "numeric-below",
        {
            "name": "n",
            "type": "numeric_attribute",
            "numeric_attribute": {"key": "gen_ai.usage.output_tokens", "min_value": 500, "max_value": 1000},
        },
        {"span": {"gen_ai.usage.output_tokens": 12}},
        "not_sampled",
    ),
    (
        "numeric-ignores-strings",
        {"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "x", "min_value": 0}},
        {"span": {"x": "12"}},
        "not_sampled",
    ),
    (
        "boolean",
        {"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "app.force_judge", "value": True}},
        {"span": {"app.force_judge": True}},
        "sampled",
    ),
    (
        "boolean-false",
        {"name": "b", "type": "boolean_attribute", "boolean_attribute": {"key": "app.force_judge", "value": True}},
        {"span": {"app.force_judge": False}},
        "not_sampled",
    ),
    (
        "status-error-on-other-span",
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"statuses": {0, 2}},
        "sampled",
    ),
    (
        "status-error-on-this-span",
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"status": 2},
        "sampled",
    ),
    (
        "status-ok",
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"statuses": {0, 1}},
        "not_sampled",
    ),
    (
        "latency-slow",
        {"name": "l", "type": "latency", "latency": {"threshold_ms": 5000}},
        {"duration_ms": 8000},
        "sampled",
    ),
    (
        "latency-fast",
        {"name": "l", "type": "latency", "latency": {"threshold_ms": 5000}},
        {"duration_ms": 80},
        "not_sampled",
    ),
    (
        "latency-above-upper",
        {"name": "l", "type": "latency", "latency": {"threshold_ms": 1000, "upper_threshold_ms": 2000}},
        {"duration_ms": 8000},
        "not_sampled",
    ),
    (
        "and-all",
        {"name": "and", "type": "and", "and": {"and_sub_policy": [ROUTE, {"name": "a", "type": "always_sample"}]}},
        {"root": {"http.route": "/support"}},
        "sampled",
    ),
    (
        "and-one-missing",
        {"name": "and", "type": "and", "and": {"and_sub_policy": [ROUTE, {"name": "a", "type": "always_sample"}]}},
        {"root": {"http.route": "/billing"}},
        "not_sampled",
    ),
    (
        "drop-matches",
        {"name": "d", "type": "drop", "drop": {"drop_sub_policy": [ROUTE]}},
        {"root": {"http.route": "/support"}},
        "dropped",
    ),
    (
        "drop-no-match",
        {"name": "d", "type": "drop", "drop": {"drop_sub_policy": [ROUTE]}},
        {"root": {"http.route": "/billing"}},
        "not_sampled",
    ),
    (
        "slice-rate-zero-slice",
        {
            "name": "sr",
            "type": "slice_rate",
            "slice_rate": {"key": "root.http.route", "rates": {"/support": 0}, "default_percentage": 100},
        },
        {"root": {"http.route": "/support"}},
        "not_sampled",
    ),
    (
        "slice-rate-default",
        {
            "name": "sr",
            "type": "slice_rate",
            "slice_rate": {"key": "root.http.route", "rates": {"/support": 0}, "default_percentage": 100},
        },
        {"root": {"http.route": "/other"}},
        "sampled",
    ),
]


@pytest.mark.parametrize(("config", "context", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy(config: dict[str, Any], context: dict[str, Any], expected: str) -> None:
    """Each policy type on a named case."""
    assert verdict(policy(config), ctx(**context)) == expected


def test_fnv1a_64_matches_the_reference_vectors() -> None:
    """The Collector's probabilistic policy hashes with FNV-1a 64; check the published test vectors."""
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


@pytest.mark.parametrize("pct", [1, 10, 33.3, 90])
def test_probabilistic_fraction_over_100000_trace_ids_and_identical_on_two_instances(pct: float) -> None:
    """Within 4 standard deviations of pct over 100,000 random trace ids; two replicas agree on each."""
    rng = random.Random(int(pct * 10))
    ids = [rng.randbytes(16) for _ in range(100_000)]
    config = {"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": pct}}
    first, second = policy(config), policy(config)

    a = [first.evaluate(ctx(t)).verdict is Verdict.SAMPLED for t in ids]
    b = [second.evaluate(ctx(t)).verdict is Verdict.SAMPLED for t in ids]

    p = pct / 100
    assert a == b
    assert abs(sum(a) - len(ids) * p) <= 4 * math.sqrt(len(ids) * p * (1 - p))


def test_precedence_drop_over_sample_over_not_sampled() -> None:
    """As in the Collector: any drop wins; otherwise any sample; otherwise not sampled."""
    clock = FakeClock()
    always = POLICY.validate_python({"name": "everything", "type": "always_sample"})
    drop = POLICY.validate_python({"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [ROUTE]}})
    sampler = Sampler.from_config([always, drop], clock)

    dropped = sampler.decide(ctx(root={"http.route": "/support"}))
    sampled = sampler.decide(ctx(root={"http.route": "/billing"}))
    nothing = Sampler.from_config([drop], clock).decide(ctx(root={"http.route": "/billing"}))

    assert (dropped.sampled, dropped.policy) == (False, "no-health")
    assert (sampled.sampled, sampled.policy, sampled.probability) == (True, "everything", 1.0)
    assert (nothing.sampled, nothing.policy) == (False, None)


def test_selection_probability_combines_the_policies_that_chose() -> None:
    """Two probabilistic policies with independent salts: p = 1 - (1-p1)(1-p2); same salt: max."""
    clock = FakeClock()
    a = POLICY.validate_python(
        {"name": "a", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100, "hash_salt": "x"}}
    )
    b = POLICY.validate_python(
        {"name": "b", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100, "hash_salt": "y"}}
    )
    c = POLICY.validate_python(
        {
            "name": "c",
            "type": "slice_rate",
            "slice_rate": {"key": "m", "rates": {}, "default_percentage": 50, "hash_salt": "z"},
        }
    )
    low = POLICY.validate_python(
        {"name": "low", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100, "hash_salt": "x"}}
    )

    # Find a trace chosen by the 50% slice policy to see the combination.
    chosen = next(
        t
        for t in (bytes([i]) * 16 for i in range(256))
        if policy(c.model_dump(), clock).evaluate(ctx(t)).verdict is Verdict.SAMPLED
    )
    assert Sampler.from_config([a, b], clock).decide(ctx(chosen)).probability == 1.0
    assert Sampler.from_config([c], clock).decide(ctx(chosen)).probability == 0.5
    assert Sampler.from_config([a, low], clock).decide(ctx(chosen)).probability == 1.0


def test_rate_limiting_never_exceeds_its_rate_over_a_simulated_hour() -> None:
    """20 spans arrive every 100 ms for an hour; never more than 5 judged in any second."""
    clock = FakeClock()
    limiter = policy({"name": "rl", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 5}}, clock)
    judged_at: list[float] = []
    for _ in range(36_000):
        for _ in range(2):
            if limiter.evaluate(ctx()).verdict is Verdict.SAMPLED:
                judged_at.append(clock.monotonic())
        clock.advance(0.1)

    assert len(judged_at) == pytest.approx(5 * 3600, rel=0.01)
    window = 0
    for i, t in enumerate(judged_at):
        while judged_at[window] <= t - 1.0 + 1e-6:  # a half-open second: (t - 1, t]
            window += 1
        assert i - window + 1 <= 5


def test_budget_caps_spend_per_hour_and_tokens_per_minute_over_a_simulated_hour() -> None:
    """Judgments cost $0.002 and 400 tokens each and finish 2 s later; caps: $1/hour, 3,000 tokens/minute."""
    clock = FakeClock()
    budget = POLICY.validate_python(
        {"name": "money", "type": "budget", "budget": {"max_usd_per_hour": 1.0, "max_tokens_per_minute": 3000}}
    )
    always = POLICY.validate_python({"name": "all", "type": "always_sample"})
    sampler = Sampler.from_config([always, budget], clock)
    in_flight: list[float] = []
    spend: list[tuple[float, float, int]] = []
    for _ in range(36_000):  # a span every 100 ms
        now = clock.monotonic()
        while in_flight and in_flight[0] <= now:
            in_flight.pop(0)
            sampler.settle(0.002, 400)
            spend.append((now, 0.002, 400))
        if sampler.decide(ctx()).sampled and sampler.admit(1):
            in_flight.append(now + 2.0)
        clock.advance(0.1)

    for i, (t, _, _) in enumerate(spend):
        last_hour = sum(c for s, c, _ in spend[: i + 1] if s > t - 3600)
        last_minute = sum(k for s, _, k in spend[: i + 1] if s > t - 60)
        assert last_hour <= 1.0 + 1e-9
        assert last_minute <= 3000
    assert len(spend) >= 400, "the budget is used (7 a minute fit the token cap), not just refused"


def test_new_version_is_judged_more_until_min_samples_then_back_to_baseline() -> None:
    """A prompt version unseen in the window is boosted to 100 % until 3 of it were judged."""
    clock = FakeClock()
    config = POLICY.validate_python(
        {
            "name": "new",
            "type": "new_version",
            "new_version": {"key": "gen_ai.prompt.version", "min_samples": 3, "startup_grace": "1m"},
        }
    )
    sampler = Sampler.from_config([config], clock)
    old = ctx(span={"gen_ai.prompt.version": "v1"})
    sampler.decide(old)  # v1 is known: seen during the start-up grace
    clock.advance(120)

    results = []
    for i in range(6):
        c = ctx(bytes([i]) * 16, span={"gen_ai.prompt.version": "v2"})
        decision = sampler.decide(c)
        sampler.observe(c, judged=decision.sampled)
        results.append(decision.sampled)

    assert not sampler.decide(ctx(span={"gen_ai.prompt.version": "v1"})).sampled
    assert results == [True, True, True, False, False, False]


def test_new_version_boost_ends_after_duration() -> None:
    clock = FakeClock()
    config = POLICY.validate_python(
        {
            "name": "new",
            "type": "new_version",
            "new_version": {"key": "m", "min_samples": 1000, "duration": "1h", "startup_grace": 0},
        }
    )
    sampler = Sampler.from_config([config], clock)

    first = sampler.decide(ctx(span={"m": "cheap-model"})).sampled
    clock.advance(3601)
    later = sampler.decide(ctx(span={"m": "cheap-model"})).sampled

    assert (first, later) == (True, False)


def test_min_per_slice_gives_a_rare_slice_its_minimum() -> None:
    """A slice with one request a minute still gets 5 judged per hour; a busy slice is not forced."""
    clock = FakeClock()
    config = POLICY.validate_python(
        {
            "name": "floor",
            "type": "min_per_slice",
            "min_per_slice": {"key": "root.http.route", "min_samples": 5, "window": "1h"},
        }
    )
    sampler = Sampler.from_config([config], clock)
    judged = {"/rare": 0, "/busy": 0}
    for minute in range(60):
        for route, count in (("/rare", 1), ("/busy", 100)):
            for i in range(count):
                c = ctx(bytes([minute % 256, i % 256]) * 8, root={"http.route": route})
                decision = sampler.decide(c)
                sampler.observe(c, judged=decision.sampled)
                judged[route] += decision.sampled
        clock.advance(60)

    assert judged == {"/rare": 5, "/busy": 5}


def test_composite_shares_a_rate_between_sub_policies() -> None:
    clock = FakeClock()
    composite = policy(
        {
            "name": "c",
            "type": "composite",
            "composite": {
                "max_total_spans_per_second": 10,
                "policy_order": ["errors", "rest"],
                "composite_sub_policy": [
                    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                    {"name": "rest", "type": "always_sample"},
                ],
                "rate_allocation": [{"policy": "errors", "percent": 30}],
            },
        },
        clock,
    )

    rest = sum(composite.evaluate(ctx()).verdict is Verdict.SAMPLED for _ in range(50))
    errors = sum(composite.evaluate(ctx(status=2)).verdict is Verdict.SAMPLED for _ in range(50))
    clock.advance(1.0)
    errors_first = sum(composite.evaluate(ctx(status=2)).verdict is Verdict.SAMPLED for _ in range(50))

    assert (rest, errors) == (7, 3), "each sub-policy within its share; the total within the maximum"
    assert errors_first == 10, "errors beyond their share fall through to the next sub-policy, as in the Collector"


@pytest.mark.parametrize(
    ("resource", "span", "judged"),
    [
        ({"service.name": "otel-judge"}, {}, False),
        ({"service.name": "shop"}, {"otel_judge.self": True}, False),
        ({"service.name": "shop"}, {}, True),
    ],
    ids=["own-service", "marker", "app"],
)
def test_loop_guard_drops_our_own_telemetry(resource: dict[str, Any], span: dict[str, Any], judged: bool) -> None:
    always = POLICY.validate_python({"name": "all", "type": "always_sample"})
    sampler = Sampler.from_config([always], FakeClock(), LoopGuardConfig())

    decision = sampler.decide(ctx(resource=resource, span=span))

    assert decision.sampled is judged
    if not judged:
        assert decision.policy == "loop_guard"


@pytest.mark.parametrize(
    "policies",
    [
        [{"name": "none", "type": "probabilistic", "probabilistic": {"sampling_percentage": 0}}],
        [{"name": "half", "type": "probabilistic", "probabilistic": {"sampling_percentage": 50}}],
        [
            {"name": "a", "type": "probabilistic", "probabilistic": {"sampling_percentage": 30}},
            {"name": "b", "type": "probabilistic", "probabilistic": {"sampling_percentage": 60, "hash_salt": "x"}},
        ],
        [{"name": "all", "type": "always_sample"}],
    ],
    ids=["0%", "50%", "two-salts", "always"],
)
@pytest.mark.parametrize(
    ("resource", "span"),
    [
        ({"service.name": "otel-judge"}, {}),
        ({"service.name": "shop"}, {"otel_judge.self": True}),
        ({"service.name": "shop", "otel_judge.self": 1}, {}),
        ({"service.name": "shop"}, {"gen_ai.operation.name": "chat"}),
    ],
    ids=["own-service", "span-marker", "resource-marker", "app"],
)
def test_deciding_by_trace_id_equals_deciding_with_a_context(
    policies: list[dict[str, Any]], resource: dict[str, Any], span: dict[str, Any]
) -> None:
    """The pass-through's shortcut for trace-id-only policies decides as :meth:`Sampler.decide` does."""
    sampler = Sampler.from_config([POLICY.validate_python(p) for p in policies], FakeClock(), LoopGuardConfig())
    assert sampler.by_trace_id
    rng = random.Random(5)
    for _ in range(200):
        trace_id = rng.randbytes(16)
        full = sampler.decide(ctx(trace_id, resource=resource, span=span))
        assert sampler.decide_by_trace_id(trace_id, resource, span.keys()) == full


def test_policies_reading_the_span_are_not_decided_by_trace_id() -> None:
    model = POLICY.validate_python(
        {"name": "m", "type": "string_attribute", "string_attribute": {"key": "gen_ai.request.model", "values": ["x"]}}
    )
    assert not Sampler.from_config([model], FakeClock()).by_trace_id


def test_loop_guard_can_be_turned_off() -> None:
    always = POLICY.validate_python({"name": "all", "type": "always_sample"})
    sampler = Sampler.from_config([always], FakeClock(), LoopGuardConfig(enabled=False))

    assert sampler.decide(ctx(resource={"service.name": "otel-judge"})).sampled


def test_plugin_policy_from_an_entry_point(tmp_path: Any) -> None:
    """type: plugin loads a third-party policy registered under otel_judge.sampling_policies."""
    import subprocess
    import sys
    import textwrap

    site = tmp_path / "site"
    (site / "acme_policy").mkdir(parents=True)
    (site / "acme_policy" / "__init__.py").write_text(
        textwrap.dedent("""
        from otel_judge.sampling import Needs, PolicyResult, Verdict

        class VipPolicy:
            needs = Needs()
            def __init__(self, config, clock):
                self.name = config.name
                self.tier = config.plugin.settings["tier"]
            def evaluate(self, ctx):
                hit = ctx.span_attrs.get("app.tier") == self.tier
                return PolicyResult(Verdict.SAMPLED if hit else Verdict.NOT_SAMPLED, 1.0 if hit else 0.0)
    """)
    )
    dist = site / "acme_policy-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-policy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[otel_judge.sampling_policies]\nvip = acme_policy:VipPolicy\n")
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(site)!r})
        from pydantic import TypeAdapter
        from otel_judge.component import FakeClock
        from otel_judge.config import PolicyConfig
        from otel_judge.errors import ConfigError
        from otel_judge.sampling import Sampler
        from tests.test_sampling import ctx
        cfg = TypeAdapter(PolicyConfig).validate_python(
            {{"name": "vips", "type": "plugin", "plugin": {{"entry_point": "vip", "settings": {{"tier": "gold"}}}}}})
        sampler = Sampler.from_config([cfg], FakeClock())
        print(sampler.decide(ctx(span={{"app.tier": "gold"}})).sampled, sampler.decide(ctx()).sampled)
        bad = TypeAdapter(PolicyConfig).validate_python(
            {{"name": "x", "type": "plugin", "plugin": {{"entry_point": "nope"}}}})
        try:
            Sampler.from_config([bad], FakeClock())
        except ConfigError as exc:
            print(exc.problems[0])
    """)

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    lines = out.stdout.splitlines()
    assert lines[0] == "True False"
    assert lines[1] == "sampling policy 'x': no plugin 'nope' (available: vip)"
