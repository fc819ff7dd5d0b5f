"""The judge fast path (a direct OpenAI-compatible call) and the litellm path behave the same.

Every scenario runs both clients against the same :class:`FakeJudge`: the request the judge receives,
the reply, the token and cost figures, the error kinds and retries, the scores on the spans. And the
fast path never imports litellm (its import costs seconds and ~190 MiB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from otel_judge import semconv
from otel_judge.component import Settings
from otel_judge.config import JudgeConfig, validate_config
from otel_judge.errors import ConfigError, JudgeTimeoutError, PermanentError, RetryableError
from otel_judge.judge import (
    USAGE,
    JudgeReply,
    JudgeRouter,
    LitellmJudge,
    OpenAICompatibleJudge,
    UsageMeter,
    build_judge_client,
)
from otel_judge.providers import PROVIDERS, load_prices, resolve_route
from otel_judge.telemetry import Telemetry
from otel_judge.testing import FakeJudge, JudgeAnswer, JudgeRequest, SpanSink

from .conftest import pipeline_config, running
from .otlp_builders import RawClient, genai_span, request

CLIENTS = ["openai", "litellm"]
STATUS = semconv.OTEL_JUDGE_EVALUATION_STATUS
SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer"}},
    "required": ["score"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "system", "content": "You judge."}, {"role": "user", "content": "Rate: Paris."}]


def judge_config(model: str, api_base: str, client: str, **extra: Any) -> JudgeConfig:
    data = {"model": model, "api_base": api_base, "api_key": "sk-test", "client": client, "top_p": 0.9, **extra}
    return validate_config({"exporters": {"debug": {}}, "judge": data}).judge


async def call(config: JudgeConfig, settings: Settings | None = None) -> tuple[JudgeReply | Exception, UsageMeter]:
    """One judge call with the client ``config`` asks for: the reply (or the error) and the meter."""
    client = build_judge_client(config, settings or Settings())
    expected = LitellmJudge if config.client == "litellm" else OpenAICompatibleJudge
    assert isinstance(client, expected)
    meter = UsageMeter()
    token = USAGE.set(meter)
    try:
        await client.start()
        await client.ready()
        return await client.complete(list(MESSAGES), SCHEMA), meter
    except (RetryableError, PermanentError) as exc:
        return exc, meter
    finally:
        USAGE.reset(token)
        await client.shutdown(0)


# Models of every kind of route: unknown (self-hosted) and priced models, a bare OpenAI name, reasoning
# models (o-series: system messages become user messages; gpt-5 with and without sampling parameters),
# Azure deployments, and providers with their own quirks (Mistral's /v1, OpenRouter's usage.include).
MODELS = [
    ("openai/fake-judge", "/v1"),
    ("openai/gpt-4o-mini", "/v1"),
    ("gpt-4o-mini", "/v1"),
    ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", "/v1"),
    ("openai/o3-mini", "/v1"),
    ("openai/gpt-5-mini", "/v1"),
    ("openai/gpt-5.1", "/v1"),
    ("azure/gpt-4o-mini", ""),
    ("mistral/mistral-small-latest", "/v1"),
    ("deepseek/deepseek-chat", "/v1"),
    ("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo", "/v1"),
    ("fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct", "/v1"),
    ("openrouter/openai/gpt-4o-mini", "/v1"),
    ("xai/grok-3-mini", "/v1"),
]


@pytest.mark.parametrize(("model", "suffix"), MODELS, ids=[m for m, _ in MODELS])
async def test_both_clients_send_the_same_request_and_account_the_same_reply(
    model: str, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake judge receives the same path and body from both clients (parameters, structured
    output, reasoning-model rules), and both report the same text, tokens and cost."""
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    async with FakeJudge(lambda r: JudgeAnswer(text='{"score": 80}', prompt_tokens=1500, cached_tokens=1024)) as fake:
        api_base = f"http://127.0.0.1:{fake.port}{suffix}"
        results = []
        for client in CLIENTS:
            reply, meter = await call(judge_config(model, api_base, client))
            sent: JudgeRequest = fake.requests[-1]
            results.append((sent.path, sent.body, reply, meter.total(), meter.models))

    fast, litellm = results
    assert fast[0] == litellm[0]  # path and query
    assert fast[1] == litellm[1]  # body
    assert fast[2] == litellm[2] and isinstance(fast[2], JudgeReply)
    assert fast[3] == litellm[3] and fast[4] == litellm[4] == [model]
    if model.endswith("gpt-4o-mini") and not model.startswith("openrouter"):
        # priced from litellm's list: 476 prompt tokens + 1024 cached at the cache price + 12 output
        assert fast[3].cost_usd == pytest.approx(476 * 0.15e-6 + 1024 * 0.075e-6 + 12 * 0.6e-6)


ERRORS: list[tuple[str, JudgeAnswer, type[Exception], float | None]] = [
    ("400", JudgeAnswer(status=400), PermanentError, None),
    ("401", JudgeAnswer(status=401), PermanentError, None),
    ("403", JudgeAnswer(status=403), PermanentError, None),
    ("404", JudgeAnswer(status=404), PermanentError, None),
    ("408", JudgeAnswer(status=408), JudgeTimeoutError, None),
    ("409", JudgeAnswer(status=409), RetryableError, None),
    ("422", JudgeAnswer(status=422), PermanentError, None),
    ("429-retry-after", JudgeAnswer(status=429, headers={"Retry-After": "7"}), RetryableError, 7.0),
    ("500", JudgeAnswer(status=500), RetryableError, None),
    ("502", JudgeAnswer(status=502), RetryableError, None),
    ("503-retry-after", JudgeAnswer(status=503, headers={"Retry-After": "2"}), RetryableError, 2.0),
    ("504", JudgeAnswer(status=504), JudgeTimeoutError, None),
    ("hang", JudgeAnswer(hang=True), JudgeTimeoutError, None),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("answer", "kind", "retry_after"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
async def test_judge_errors_map_to_the_same_kinds(
    client: str, answer: JudgeAnswer, kind: type[Exception], retry_after: float | None
) -> None:
    """HTTP errors, Retry-After hints and hung calls become the same error kinds on both paths; the
    failed call is counted with its kind."""
    settings = Settings(telemetry=Telemetry())
    async with FakeJudge(lambda r: answer) as fake:
        error, meter = await call(judge_config(fake.model, fake.api_base, client, timeout="300ms"), settings)
        fake.release()

    assert type(error) is kind
    assert getattr(error, "retry_after", None) == retry_after
    assert meter.total().input_tokens == 0
    assert settings.telemetry.value("otel_judge.judge.calls", outcome=kind.__name__, model=fake.model) == 1


@pytest.mark.parametrize("client", CLIENTS)
async def test_an_unreachable_judge_is_retryable(client: str, unused_tcp_port: int) -> None:
    """Nobody listening at the judge's address: a retryable error on both paths."""
    error, _ = await call(judge_config("openai/fake-judge", f"http://127.0.0.1:{unused_tcp_port}/v1", client))

    assert type(error) is RetryableError


async def judge_spans(
    sink: SpanSink, fake: FakeJudge, client: str, answers: list[str], **judge: Any
) -> tuple[list[dict[str, Any]], Telemetry]:
    """Send one GenAI span per answer through a pipeline judging with ``client``; the spans' attributes
    in the order sent, and the pipeline's telemetry."""
    settings = Settings(telemetry=Telemetry())
    evaluators = [{"name": "quality", "type": "score"}]
    config = pipeline_config(sink, fake, evaluators=evaluators, judge={"client": client, **judge})
    async with running(config, settings) as pipeline:
        rpc = RawClient(pipeline.grpc_port)
        for answer in answers:
            await rpc.traces(request(genai_span(answer)))
        received = await sink.wait_for_spans(len(answers))
        await rpc.close()
    by_answer = {json.loads(r.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"]: r for r in received}
    return [by_answer[a].attributes for a in answers], settings.telemetry


def score_by_length(request: JudgeRequest) -> str:
    """The score depends on the judged completion, so a score proves which content reached the judge."""
    text = request.response_text or ""
    return json.dumps({"score": min(100, 10 + len(text)), "explanation": f"{len(text)} characters"})


@pytest.mark.parametrize("client", CLIENTS)
async def test_same_scores_tokens_and_cost_on_the_spans(client: str, sink: SpanSink) -> None:
    """End to end with either client: each span carries the score of its own content; tokens and
    cost (litellm's price of gpt-4o-mini) add up the same."""
    answers = ["Paris.", "The capital of France is Paris.", "Lyon, I think, but maybe Paris?"]
    async with FakeJudge(score_by_length, model="gpt-4o-mini") as fake:
        spans, telemetry = await judge_spans(sink, fake, client, answers)

    assert [s[STATUS] for s in spans] == ["evaluated"] * 3
    assert [s["gen_ai.evaluation.quality.score.value"] for s in spans] == [10 + len(a) for a in answers]
    assert [s["gen_ai.evaluation.quality.explanation"] for s in spans] == [f"{len(a)} characters" for a in answers]
    assert all(s[semconv.OTEL_JUDGE_JUDGE_MODEL] == "openai/gpt-4o-mini" for s in spans)
    assert telemetry.value("otel_judge.judge.tokens", type="input") == 3 * 120
    assert telemetry.value("otel_judge.judge.tokens", type="output") == 3 * 12
    assert telemetry.value("otel_judge.judge.cost") == pytest.approx(3 * (120 * 0.15e-6 + 12 * 0.6e-6))
    assert all(r.body["response_format"]["type"] == "json_schema" for r in fake.requests)


SCRIPTS: list[tuple[str, list[JudgeAnswer], str, int, str]] = [
    # The hint (50 ms) is waited, not initial_interval (5 s, beyond max_elapsed_time): evaluated.
    (
        "429-hint-then-ok",
        [JudgeAnswer(status=429, headers={"Retry-After": "0.05"}), JudgeAnswer(text="77")],
        "evaluated",
        2,
        "5s",
    ),
    ("500-then-ok", [JudgeAnswer(status=500), JudgeAnswer(text="77")], "evaluated", 2, "10ms"),
    ("500-past-the-budget", [JudgeAnswer(status=500)] * 2, "judge_error", 1, "5s"),
    ("401", [JudgeAnswer(status=401)], "judge_error", 1, "10ms"),
    ("garbage", [JudgeAnswer(text="I would say it is rather good")], "parse_error", 1, "10ms"),
    ("out-of-range", [JudgeAnswer(text="999")], "parse_error", 1, "10ms"),
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("answers", "status", "calls", "interval"), [s[1:] for s in SCRIPTS], ids=[s[0] for s in SCRIPTS]
)
async def test_same_retries_and_statuses(
    client: str, *, answers: list[JudgeAnswer], status: str, calls: int, interval: str, sink: SpanSink
) -> None:
    """Retries (a server's Retry-After wins over the backoff; none past max_elapsed_time), permanent
    errors and unparseable replies end the same way on both paths, after the same number of calls."""
    script = iter(answers)
    async with FakeJudge(lambda r: next(script)) as fake:
        retry = {"initial_interval": interval, "max_elapsed_time": "2s", "randomization_factor": 0}
        spans, _ = await judge_spans(sink, fake, client, ["Paris."], retry_on_failure=retry)

    assert spans[0][STATUS] == status
    assert len(fake.requests) == calls
    if status == "evaluated":
        assert spans[0]["gen_ai.evaluation.quality.score.value"] == 77


def test_auto_uses_the_fast_path_only_for_openai_compatible_providers() -> None:
    """auto: direct calls for OpenAI-compatible providers, litellm for the others; openai refuses a
    provider it cannot reach (the YAML path says where); litellm always uses litellm."""
    base = "http://127.0.0.1:9/v1"
    auto = {m: build_judge_client(judge_config(m, base, "auto"), Settings()) for m in ("openai/x", "anthropic/claude")}

    assert isinstance(auto["openai/x"], OpenAICompatibleJudge)
    assert isinstance(auto["anthropic/claude"], LitellmJudge)
    assert isinstance(build_judge_client(judge_config("openai/x", base, "litellm"), Settings()), LitellmJudge)
    with pytest.raises(ConfigError) as caught:
        validate_config({"exporters": {"debug": {}}, "judge": {"model": "anthropic/claude-3", "client": "openai"}})
    assert any(p.startswith("judge") and "anthropic/claude-3" in p for p in caught.value.problems)
    fallbacks = {"model": "openai/x", "client": "openai", "fallbacks": [{"model": "gemini/gemini-2.0-flash"}]}
    with pytest.raises(ConfigError):
        validate_config({"exporters": {"debug": {}}, "judge": fallbacks})


def test_router_builds_one_client_per_model() -> None:
    """The judge and each fallback get the client judge.client chooses, each resolved once."""
    config = validate_config(
        {
            "exporters": {"debug": {}},
            "judge": {
                "model": "openai/gpt-4o-mini",
                "api_key": "sk",
                "fallbacks": [{"model": "anthropic/claude-3-5-haiku-20241022"}, {"model": "groq/llama-3.1-8b-instant"}],
            },
        }
    ).judge
    router = JudgeRouter(config, Settings())

    kinds = [type(slot.client).__name__ for slot in router._slots]
    assert kinds == ["OpenAICompatibleJudge", "LitellmJudge", "OpenAICompatibleJudge"]
    assert router.models == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022", "groq/llama-3.1-8b-instant"]


# Providers litellm resolves with get_llm_provider alone (Azure, Ollama, OpenRouter and vllm are
# resolved elsewhere in litellm; the request comparison above covers Azure and OpenRouter).
COMPARABLE = sorted(set(PROVIDERS) - {"azure", "ollama", "ollama_chat", "openrouter", "vllm", "openai"})


@pytest.mark.parametrize("provider", COMPARABLE)
def test_provider_table_matches_litellm(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base URL, credentials from the environment and the model name on the wire are litellm's."""
    import litellm

    spec = PROVIDERS[provider]
    for name in spec.base_env + spec.key_env:
        monkeypatch.delenv(name, raising=False)
    if spec.key_env:
        monkeypatch.setenv(spec.key_env[-1], "key-from-env")
    if spec.default_base is None:
        monkeypatch.setenv(spec.base_env[0], "http://127.0.0.1:9/v1")

    name, resolved, key, api_base = litellm.get_llm_provider(f"{provider}/org/some-model")
    route = resolve_route(f"{provider}/org/some-model", None, None)

    assert route is not None and resolved == provider and route.model == name == "org/some-model"
    assert route.url == f"{api_base.rstrip('/')}{spec.path}"
    assert route.headers.get("Authorization") == (f"Bearer {key}" if key else None)


def test_prices_match_litellm() -> None:
    """The price list read without litellm gives litellm's cost for the same usage."""
    import litellm

    openai = load_prices("openai")
    for model in ("gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-5-mini", "gpt-4.1-nano"):
        info = openai.get(model)
        assert info is not None
        prompt, completion = litellm.cost_per_token(model=model, prompt_tokens=1000, completion_tokens=100)
        assert info.cost(1000, 100) == pytest.approx(prompt + completion)


def test_serving_with_a_fast_path_judge_never_imports_litellm(tmp_path: Path) -> None:
    """Importing otel_judge, starting a pipeline with receivers and a judge, and judging a span over
    the fast path leave litellm unimported."""
    code = """
import asyncio, json, sys
from otel_judge.config import validate_config
from otel_judge.pipeline import Pipeline
from otel_judge.testing import FakeJudge, SpanSink
from tests.otlp_builders import RawClient, genai_span, request

async def main():
    async with FakeJudge(model="gpt-4o-mini") as fake, SpanSink() as sink:
        config = validate_config({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"},
                                                 "http": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}}},
            "sampling": {"policies": [{"name": "all", "type": "probabilistic",
                                       "probabilistic": {"sampling_percentage": 100}}]},
            "judge": {"model": fake.model, "api_base": fake.api_base, "api_key": "sk"},
            "evaluators": [{"name": "quality", "type": "score"}],
        })
        pipeline = Pipeline(config)
        await pipeline.start()
        started = "litellm" in sys.modules
        rpc = RawClient(pipeline.grpc_port)
        await rpc.traces(request(genai_span("Paris.")))
        spans = await sink.wait_for_spans(1)
        await rpc.close()
        await pipeline.shutdown(2)
        status = spans[0].attributes["otel_judge.evaluation.status"]
        print(json.dumps({"after_start": started, "after_judging": "litellm" in sys.modules, "status": status}))

asyncio.run(main())
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=60)

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "after_start": False,
        "after_judging": False,
        "status": "evaluated",
    }
