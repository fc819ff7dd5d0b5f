"""Sampling decisions: deterministic on the trace id, the configured fraction, replica-consistent."""

from __future__ import annotations

import math
import random

import pytest

from otel_judge.config import AlwaysSamplePolicyConfig, ProbabilisticPolicyConfig, ProbabilisticSpec
from otel_judge.sampling import ProbabilisticPolicy, Sampler, SamplingContext, fnv1a_64


def probabilistic(pct: float, salt: str = "") -> ProbabilisticPolicy:
    spec = ProbabilisticSpec(sampling_percentage=pct, hash_salt=salt)
    return ProbabilisticPolicy(ProbabilisticPolicyConfig(name="p", type="probabilistic", probabilistic=spec))


def ctx(trace_id: bytes) -> SamplingContext:
    return SamplingContext(trace_id=trace_id, span=None)


def test_fnv1a_64_matches_the_reference_vectors() -> None:
    """The Collector's probabilistic policy hashes with FNV-1a 64; check the published test vectors."""
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_same_trace_id_same_decision_on_two_instances() -> None:
    """Two replicas configured alike agree on every trace (so a trace is judged on all or none)."""
    rng = random.Random(7)
    ids = [rng.randbytes(16) for _ in range(2000)]
    first, second = Sampler([probabilistic(30)]), Sampler([probabilistic(30)])

    assert [first.decide(ctx(t)).sampled for t in ids] == [second.decide(ctx(t)).sampled for t in ids]


@pytest.mark.parametrize("pct", [1, 10, 25, 50, 90])
def test_fraction_over_10000_trace_ids_is_within_statistical_bounds(pct: float) -> None:
    """The sampled share of 10,000 random trace ids is within 4 standard deviations of pct."""
    rng = random.Random(pct)
    policy = probabilistic(pct)
    n = 10_000

    hits = sum(policy.evaluate(ctx(rng.randbytes(16))).value == "sampled" for _ in range(n))

    p = pct / 100
    assert abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize(("pct", "expected"), [(0, 0), (100, 1000)], ids=["zero", "hundred"])
def test_zero_and_hundred_percent_are_exact(pct: float, expected: int) -> None:
    rng = random.Random(1)
    policy = probabilistic(pct)

    assert sum(policy.evaluate(ctx(rng.randbytes(16))).value == "sampled" for _ in range(1000)) == expected


def test_salt_changes_which_traces_are_chosen() -> None:
    rng = random.Random(3)
    ids = [rng.randbytes(16) for _ in range(1000)]
    plain, salted = probabilistic(50), probabilistic(50, salt="replica-set-b")

    assert [plain.evaluate(ctx(t)) for t in ids] != [salted.evaluate(ctx(t)) for t in ids]


def test_first_sampling_policy_names_the_decision() -> None:
    """Decision carries the policy that chose the span and its selection probability."""
    sampler = Sampler([probabilistic(0), probabilistic(100)])
    sampler.policies[1].name = "everything"  # type: ignore[misc]
    always = Sampler.from_config([AlwaysSamplePolicyConfig(name="all", type="always_sample")])

    decision = sampler.decide(ctx(b"\x05" * 16))

    assert (decision.sampled, decision.policy, decision.probability) == (True, "everything", 1.0)
    assert always.decide(ctx(b"\x00" * 16)).sampled
