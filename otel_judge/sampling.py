"""Which GenAI spans get judged.

Sampling here never drops a span: it only decides which GenAI spans are *judged*. Every policy is a
small class with ``evaluate(ctx) -> PolicyDecision``, built from its config by the ``type`` key
(:data:`POLICY_TYPES`). A span is judged when any policy samples it (as in the Collector's
``tail_sampling``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from otel_judge.config import AlwaysSamplePolicyConfig, PolicyConfig, ProbabilisticPolicyConfig

__all__ = ["POLICY_TYPES", "Decision", "Policy", "PolicyDecision", "Sampler", "SamplingContext", "fnv1a_64"]

_MAX_UINT64 = (1 << 64) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def fnv1a_64(data: bytes, h: int = _FNV_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MAX_UINT64
    return h


class PolicyDecision(enum.Enum):
    SAMPLED = "sampled"
    NOT_SAMPLED = "not_sampled"


@dataclass(frozen=True, slots=True)
class SamplingContext:
    """What a policy may look at. Grows with trace-aware sampling (root span, whole trace)."""

    trace_id: bytes
    span: Any
    resource: Any = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The sampler's verdict for one span: judged or not, by which policy, with what probability."""

    sampled: bool
    policy: str | None
    probability: float


class Policy(Protocol):
    name: str
    probability: float  # probability with which a sampled span was selected by this policy

    def evaluate(self, ctx: SamplingContext) -> PolicyDecision: ...


class ProbabilisticPolicy:
    """Trace-id hash below a threshold: the same trace gets the same decision on every replica.

    Same hash as the Collector's ``tail_sampling`` probabilistic policy (FNV-1a 64 of the salt,
    then the trace id, compared with ``percentage/100 * 2^64``), so both agree for the same salt.
    """

    DEFAULT_SALT = "default-hash-seed"

    def __init__(self, config: ProbabilisticPolicyConfig) -> None:
        self.name = config.name
        pct = config.probabilistic.sampling_percentage
        self.probability = pct / 100.0
        self._threshold = min(_MAX_UINT64, int(_MAX_UINT64 * (pct / 100.0))) if pct > 0 else -1
        self._salted = fnv1a_64((config.probabilistic.hash_salt or self.DEFAULT_SALT).encode())

    def evaluate(self, ctx: SamplingContext) -> PolicyDecision:
        if fnv1a_64(ctx.trace_id, self._salted) <= self._threshold:
            return PolicyDecision.SAMPLED
        return PolicyDecision.NOT_SAMPLED


class AlwaysSamplePolicy:
    def __init__(self, config: AlwaysSamplePolicyConfig) -> None:
        self.name = config.name
        self.probability = 1.0

    def evaluate(self, ctx: SamplingContext) -> PolicyDecision:
        return PolicyDecision.SAMPLED


POLICY_TYPES: dict[str, Callable[[Any], Policy]] = {
    "probabilistic": ProbabilisticPolicy,
    "always_sample": AlwaysSamplePolicy,
}


class Sampler:
    """Evaluates the policies in order; the first that samples decides."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)

    @classmethod
    def from_config(cls, configs: Sequence[PolicyConfig]) -> Sampler:
        return cls([POLICY_TYPES[c.type](c) for c in configs])

    def decide(self, ctx: SamplingContext) -> Decision:
        for policy in self.policies:
            if policy.evaluate(ctx) is PolicyDecision.SAMPLED:
                return Decision(True, policy.name, policy.probability)
        return Decision(False, None, 0.0)
