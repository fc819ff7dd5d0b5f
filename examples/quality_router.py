"""Keep a cheaper model only while its quality holds: a router fed by otel-judge's quality API.

The feedback loop: the app answers with a strong model and sends a share of its traffic (the
canary) to a cheaper one; otel-judge judges both from the app's own traces and keeps the scores in
its store; the router asks ``GET /v1/quality?evaluator=...&model=<cheap>&route=...&window=...``
and switches.

* **Promote** to the cheap model once at least ``min_n`` of its answers were judged in the window
  and the lower bound of the 95% confidence interval of their mean score (``ci_low``) reaches
  ``promote_at``: the cheap model is good enough *with confidence*, not by luck.
* **Demote** back to the strong model when ``ci_low`` falls below ``demote_below`` (lower than
  ``promote_at``: the gap is the hysteresis that keeps the router from flapping on noise), when the
  quality API reports an open regression alert for the cheap model, or when the API cannot be read
  (fail safe: quality first).
* Below ``min_n`` nothing changes: the canary gathers evidence.

Thresholds are in the evaluator's own units (1-100 for a ``score`` evaluator).

    python examples/run.py router     # everything local: fake LLM whose cheap model degrades, fake judge,
                                      # otel-judge with its store and quality API, and this app

Against a real deployment: run otel-judge with ``examples/otel-judge-router.yaml`` and call
``QualityRouter.refresh()`` every minute or so from your app; ``model_for()`` picks the model of each
request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RoutingPolicy:
    """When to use the cheap model. Thresholds are in the evaluator's units (1-100 for ``score``)."""

    evaluator: str = "helpfulness"
    cheap: str = "gpt-4o-mini"
    strong: str = "gpt-4o"
    slices: tuple[tuple[str, str], ...] = (("route", "/support/chat"),)  # besides model=<cheap>
    window: str = "15m"
    min_n: int = 30
    promote_at: float = 75.0
    demote_below: float = 65.0
    canary_every: int = 10  # while on the strong model, every Nth request goes to the cheap one

    def __post_init__(self) -> None:
        if self.demote_below >= self.promote_at:
            raise ValueError("demote_below must be below promote_at (the gap is the hysteresis)")
        if self.min_n < 2 or self.canary_every < 1:
            raise ValueError("min_n must be >= 2 and canary_every >= 1")


@dataclass(frozen=True)
class Quality:
    """The part of a ``GET /v1/quality`` answer the router reads."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    pass_rate: float | None
    regression: dict[str, Any] | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Quality:
        return cls(
            int(body["n"]), body["mean"], body["ci_low"], body["ci_high"], body["pass_rate"], body.get("regression")
        )


class QualityUnavailable(Exception):
    """The quality API could not be asked or did not answer 200."""


class QualityClient:
    """``GET {base_url}/v1/quality`` with the standard library only."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def get(self, evaluator: str, slices: dict[str, str], window: str) -> Quality:
        query = urllib.parse.urlencode({"evaluator": evaluator, **slices, "window": window})
        try:
            with urllib.request.urlopen(f"{self.base_url}/v1/quality?{query}", timeout=self.timeout) as response:
                return Quality.from_json(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise QualityUnavailable(f"HTTP {exc.code}: {detail}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise QualityUnavailable(f"{type(exc).__name__}: {exc}") from None


def decide(policy: RoutingPolicy, using: str, quality: Quality | None) -> tuple[str, str]:
    """The model to use next and why, from the model in use and the cheap model's quality
    (``None``: the API could not be read). Pure, so every rule is testable on its own."""
    cheap, strong = policy.cheap, policy.strong
    if quality is None:
        return strong, "quality API unavailable: strong model (fail safe)"
    if quality.regression:
        return strong, f"regression alert open for {cheap}: strong model"
    if quality.n < policy.min_n or quality.ci_low is None:
        return using, f"n={quality.n} < min_n={policy.min_n}: no change (the canary gathers evidence)"
    bound = f"ci_low={quality.ci_low:.1f} (mean {quality.mean:.1f}, n={quality.n})"
    if using == cheap:
        if quality.ci_low < policy.demote_below:
            return strong, f"{bound} < demote_below={policy.demote_below:g}: demote to {strong}"
        return cheap, f"{bound} >= demote_below={policy.demote_below:g}: {cheap} holds"
    if quality.ci_low >= policy.promote_at:
        return cheap, f"{bound} >= promote_at={policy.promote_at:g}: promote {cheap}"
    return strong, f"{bound} < promote_at={policy.promote_at:g}: stay on {strong}"


@dataclass
class QualityRouter:
    """Picks the model of each request; ``refresh()`` re-reads the quality API and may switch."""

    policy: RoutingPolicy
    client: QualityClient
    using: str = ""
    transitions: list[dict[str, Any]] = field(default_factory=list)
    _requests: int = 0

    def __post_init__(self) -> None:
        self.using = self.using or self.policy.strong

    def model_for(self) -> str:
        """The model of the next request: the cheap one while promoted, else the canary share of it."""
        self._requests += 1
        if self.using == self.policy.cheap:
            return self.policy.cheap
        return self.policy.cheap if self._requests % self.policy.canary_every == 0 else self.policy.strong

    def quality(self) -> Quality | None:
        slices = {"model": self.policy.cheap, **dict(self.policy.slices)}
        try:
            return self.client.get(self.policy.evaluator, slices, self.policy.window)
        except QualityUnavailable as exc:
            print(f"router: quality API: {exc}", file=sys.stderr)
            return None

    def refresh(self) -> str:
        """Ask the quality API and apply :func:`decide`; returns the reason."""
        before = self.using
        self.using, reason = decide(self.policy, before, self.quality())
        if self.using != before:
            self.transitions.append({"from": before, "to": self.using, "reason": reason})
        return reason


# --------------------------------------------------------------------------- the demo app


def wait_for_judgments(router: QualityRouter, expected: int, timeout: float = 60.0) -> None:
    """Demo only: wait until the quality API counts ``expected`` judged answers of the cheap model,
    so each round decides on everything sent so far (a real router just refreshes periodically)."""
    deadline = time.monotonic() + timeout
    while True:
        quality = router.quality()
        if quality is not None and quality.n >= expected:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the quality API counted {quality.n if quality else '?'} of {expected} judgments")
        time.sleep(0.2)  # polling an HTTP API: there is nothing to wait on


def app(argv: Sequence[str] | None = None) -> int:
    """The support bot, routed: rounds of requests, a refresh of the router between rounds."""
    parser = argparse.ArgumentParser(description="support bot with a quality-gated cheap model")
    parser.add_argument("--quality-api", required=True, help="base URL, e.g. http://127.0.0.1:8787")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests-per-round", type=int, default=10)
    parser.add_argument("--min-n", type=int, default=6)
    parser.add_argument("--canary-every", type=int, default=3)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from openai_v2_app import instrument
    from support_bot import DEFAULT_QUESTION, ask, tracer_provider

    policy = RoutingPolicy(min_n=args.min_n, canary_every=args.canary_every)
    router = QualityRouter(policy, QualityClient(args.quality_api))
    provider = tracer_provider("support-bot-routed")
    instrument(provider)
    sent_cheap = 0
    try:
        for round_no in range(1, args.rounds + 1):
            reason = router.refresh()
            print(f"round {round_no}: using {router.using}: {reason}", flush=True)
            for _ in range(args.requests_per_round):
                model = router.model_for()
                ask(provider, DEFAULT_QUESTION, model)
                sent_cheap += model == policy.cheap
            provider.force_flush()
            wait_for_judgments(router, sent_cheap)
    finally:
        provider.shutdown()
    print(json.dumps({"transitions": router.transitions, "final": router.using, "sent_cheap": sent_cheap}))
    return 0


# --------------------------------------------------------------------------- the local demo

MINI_GOOD_ANSWERS = 15  # the fake provider's cheap model degrades after this many answers


class DegradingLlm:
    """The fake LLM's script: the strong model always answers well; the cheap one answers well
    ``MINI_GOOD_ANSWERS`` times, then (a silent provider update, say) stops answering the question."""

    def __init__(self, cheap: str = "gpt-4o-mini") -> None:
        self.cheap = cheap
        self.cheap_answers = 0

    def __call__(self, request: Any) -> str:
        if request.body.get("model") == self.cheap:
            self.cheap_answers += 1
            if self.cheap_answers > MINI_GOOD_ANSWERS:
                return "Thank you for contacting Northwind Outdoor. Please visit our website."
        return (
            "Sorry about the cracked pole! We ship replacement poles free of charge for damage on arrival; "
            "a new Ridge 2 main pole usually arrives in 3-5 working days."
        )


async def demo(workdir: Path, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Fakes, otel-judge with its store and quality API (examples/otel-judge-router.yaml), and the app."""
    from run import app_env, judge_verdict, run_process

    from otel_judge.config import load_config
    from otel_judge.pipeline import Pipeline
    from otel_judge.testing import FakeJudge, SpanSink

    async with FakeJudge(DegradingLlm()) as llm, FakeJudge(judge_verdict) as judge, SpanSink() as backend:
        env = {
            "OTEL_JUDGE_GRPC_ENDPOINT": "127.0.0.1:0",
            "BACKEND_OTLP_ENDPOINT": backend.endpoint,
            "OTEL_JUDGE_MODEL": judge.model,
            "OTEL_JUDGE_API_BASE": judge.api_base,
            "OTEL_JUDGE_STORE_URL": f"sqlite:///{workdir / 'store.db'}",
            "OTEL_JUDGE_QUALITY_API": "127.0.0.1:0",
        }
        config, _ = load_config(HERE / "otel-judge-router.yaml", env)
        pipeline = Pipeline(config)
        await pipeline.start()
        try:
            assert pipeline.quality_api is not None
            api = f"http://127.0.0.1:{pipeline.quality_api.port}"
            print(f"otel-judge: OTLP/gRPC on 127.0.0.1:{pipeline.grpc_port}, quality API on {api}", file=out)
            stdout = await run_process(["quality_router.py", "--quality-api", api], app_env(pipeline, llm))
        finally:
            await pipeline.shutdown(5)
    lines = stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, file=out)
    result: dict[str, Any] = json.loads(lines[-1])
    for t in result["transitions"]:
        print(f"switched {t['from']} -> {t['to']}: {t['reason']}", file=out)
    return result


if __name__ == "__main__":
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    sys.exit(app())
