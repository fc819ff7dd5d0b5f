"""The judge model, reached through litellm. The only module that imports litellm.

litellm's exceptions are translated here, once, into :class:`RetryableError`,
:class:`PermanentError` and :class:`JudgeTimeoutError`. ``import litellm`` is slow (seconds) and
heavy, so it runs in a worker thread started by :meth:`LitellmJudge.start`, never on the receive
path; judge calls wait for it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from otel_judge.component import Settings
from otel_judge.config import JudgeConfig, JudgeModelConfig
from otel_judge.errors import JudgeTimeoutError, PermanentError, RetryableError
from otel_judge.model import JudgeUsage

__all__ = ["USAGE", "CircuitBreaker", "Judge", "JudgeReply", "JudgeRouter", "LitellmJudge", "UsageMeter"]


class UsageMeter:
    """Adds up the judge usage of one judgment (an evaluator may make several calls)."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: float | None = None
        self.models: list[str] = []  # the models that answered, in order (fallbacks show here)

    def add(self, usage: JudgeUsage, model: str | None = None) -> None:
        if model is not None and model not in self.models:
            self.models.append(model)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if usage.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + usage.cost_usd

    def total(self) -> JudgeUsage:
        return JudgeUsage(self.input_tokens, self.output_tokens, self.cost_usd)


#: The meter of the judgment running in this task; judges add each call's usage to it.
USAGE: ContextVar[UsageMeter | None] = ContextVar("otel_judge_usage", default=None)


@dataclass(frozen=True, slots=True)
class JudgeReply:
    text: str
    model: str
    usage: JudgeUsage


class Judge(Protocol):
    """Something that answers a chat prompt. ``model`` names it in provenance attributes."""

    model: str

    async def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None) -> JudgeReply:
        """One judgment's call. ``schema``: the JSON Schema the reply must follow, sent as structured
        output when the model supports it (the evaluator parses strictly either way). Raises
        RetryableError / PermanentError / JudgeTimeoutError."""
        ...

    async def ready(self) -> None:
        """Wait until calls can be made (slow imports done). Not counted against call deadlines."""
        ...


def _import_litellm() -> Any:
    # Without this, importing litellm fetches a price list from the internet (and waits on it
    # when there is none); the copy bundled with the pinned release is what we want anyway.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that reject e.g. top_p get the call without it
    import logging

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return litellm


def _freeze_imports(_: object) -> None:
    """Move everything allocated so far (litellm's ~300k long-lived objects) out of the garbage
    collector's reach: otherwise every full collection walks them, pausing the receive path for
    100-200 ms."""
    gc.freeze()


_RETRYABLE_NAMES = frozenset(
    {
        "Timeout",
        "RateLimitError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
    }
)


def translate_error(exc: BaseException) -> Exception:
    """Map a litellm (or transport) exception to our error kinds."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    message = f"{name}: {str(exc)[:300]}"
    if name == "Timeout":
        return JudgeTimeoutError(message)
    if name in _RETRYABLE_NAMES or (isinstance(status, int) and (status >= 500 or status in (408, 409, 429))):
        retry_after = _retry_after(exc)
        return RetryableError(message, retry_after)
    if isinstance(exc, (ConnectionError, OSError)):
        return RetryableError(message)
    return PermanentError(message)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LitellmJudge:
    """One judge model reached with ``litellm.acompletion`` (any provider litellm supports).

    ``target`` names the model (and its api_base / api_key); ``config`` gives the shared parameters
    (temperature, max_tokens, top_p, timeout, pricing).
    """

    def __init__(self, config: JudgeConfig, settings: Settings, target: JudgeModelConfig | None = None) -> None:
        model = target.model if target is not None else config.model
        if model is None:
            raise ValueError("LitellmJudge needs judge.model")
        self.model = model
        self._config = config
        self._settings = settings
        self._litellm: asyncio.Future[Any] | None = None
        self._supports_schema: bool | None = None
        self._params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        if config.top_p is not None:
            self._params["top_p"] = config.top_p
        api_base = target.api_base if target is not None else config.api_base
        api_key = target.api_key if target is not None else config.api_key
        if api_base:
            self._params["api_base"] = api_base
        if api_key is not None:
            self._params["api_key"] = api_key.get_secret_value()

    async def start(self) -> None:
        """Begin importing litellm in a thread; returns at once."""
        if self._litellm is None:
            self._litellm = asyncio.ensure_future(asyncio.to_thread(_import_litellm))
            self._litellm.add_done_callback(_freeze_imports)

    async def shutdown(self, deadline: float) -> None:
        return None

    async def ready(self) -> None:
        await self.start()
        assert self._litellm is not None
        await self._litellm

    def supports_schema(self, litellm: Any) -> bool:
        if self._supports_schema is None:
            try:
                self._supports_schema = bool(litellm.supports_response_schema(model=self.model))
            except Exception:
                self._supports_schema = False
        return self._supports_schema

    async def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None) -> JudgeReply:
        await self.ready()
        assert self._litellm is not None
        litellm = self._litellm.result()
        telemetry = self._settings.telemetry
        params = dict(self._params)
        if schema is not None and self.supports_schema(litellm):
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": schema, "strict": True},
            }
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._config.timeout):  # a hung call is cancelled at its deadline
                response = await litellm.acompletion(
                    model=self.model,
                    messages=messages,
                    timeout=self._config.timeout,
                    num_retries=0,
                    max_retries=0,  # retries are ours (with our budget and backoff), not the SDK's
                    **params,
                )
        except TimeoutError:
            telemetry.add("otel_judge.judge.calls", outcome="JudgeTimeoutError", model=self.model)
            raise JudgeTimeoutError(f"{self.model}: no answer within {self._config.timeout:g}s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate_error(exc)
            telemetry.add("otel_judge.judge.calls", outcome=type(error).__name__, model=self.model)
            raise error from None
        finally:
            telemetry.record("otel_judge.judge.duration", time.monotonic() - started)
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError) as exc:
            telemetry.add("otel_judge.judge.calls", outcome="PermanentError", model=self.model)
            raise PermanentError(f"judge reply has no message: {exc}") from None
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = self._cost(litellm, response, input_tokens, output_tokens)
        telemetry.add("otel_judge.judge.calls", outcome="ok", model=self.model)
        telemetry.add("otel_judge.judge.tokens", input_tokens, type="input")
        telemetry.add("otel_judge.judge.tokens", output_tokens, type="output")
        if cost:
            telemetry.add("otel_judge.judge.cost", cost)
        usage = JudgeUsage(input_tokens, output_tokens, cost)
        meter = USAGE.get()
        if meter is not None:
            meter.add(usage, self.model)
        return JudgeReply(text=text, model=self.model, usage=usage)

    def _cost(self, litellm: Any, response: Any, input_tokens: int, output_tokens: int) -> float | None:
        pricing = self._config.pricing
        if pricing is not None:
            return (
                input_tokens * pricing.input_per_million_tokens + output_tokens * pricing.output_per_million_tokens
            ) / 1e6
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown model or price: the call still counts, without a cost
            return None


# --------------------------------------------------------------------------- resilience


class CircuitBreaker:
    """Per model: after ``failure_threshold`` consecutive failures the model is not called for
    ``reset_timeout``; then one probe call decides (success closes, failure opens again)."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int, reset_timeout: float, clock: Any) -> None:
        self.threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.failures = 0
        self.opened_at = 0.0
        self.state = self.CLOSED
        self.probing = False

    def allow(self) -> bool:
        if self.state == self.OPEN and self.clock.monotonic() - self.opened_at >= self.reset_timeout:
            self.state = self.HALF_OPEN
            self.probing = False
        if self.state == self.HALF_OPEN:
            if self.probing:
                return False  # one probe at a time
            self.probing = True
            return True
        return self.state == self.CLOSED

    def success(self) -> None:
        self.failures = 0
        self.state = self.CLOSED
        self.probing = False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            self.state = self.OPEN
            self.opened_at = self.clock.monotonic()


class _Bucket:
    """A token bucket refilled continuously to ``per_minute`` a minute."""

    def __init__(self, per_minute: float, clock: Any) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.clock = clock
        self.updated = clock.monotonic()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0: now)."""
        self._refill()
        missing = min(amount, self.capacity) - self.tokens
        return max(0.0, missing / self.rate)

    def take(self, amount: float) -> None:
        self._refill()
        self.tokens -= amount


class _Slot:
    """One judge model with its breaker and limits."""

    def __init__(self, client: Any, config: JudgeConfig, clock: Any) -> None:
        self.client = client
        self.breaker = CircuitBreaker(
            config.circuit_breaker.failure_threshold, config.circuit_breaker.reset_timeout, clock
        )
        limits = config.rate_limit
        self.requests = _Bucket(limits.requests_per_minute, clock) if limits.requests_per_minute else None
        self.tokens = _Bucket(limits.tokens_per_minute, clock) if limits.tokens_per_minute else None
        self.last_tokens = 0.0  # tokens of the last call: what the next one is expected to use

    def wait_for(self) -> float:
        waits = [0.0]
        if self.requests is not None:
            waits.append(self.requests.wait_for(1))
        if self.tokens is not None:
            waits.append(self.tokens.wait_for(self.last_tokens))
        return max(waits)


class ErrorReporter:
    """Logs a kind of error at most once per ``interval`` seconds, with how often it happened since."""

    def __init__(self, settings: Settings, interval: float = 60.0) -> None:
        self._settings = settings
        self._interval = interval
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}

    def report(self, model: str, error: Exception) -> None:
        key = (model, type(error).__name__)
        now = self._settings.clock.monotonic()
        count, last = self._seen.get(key, (0, -self._interval))
        if now - last < self._interval:
            self._seen[key] = (count + 1, last)
            return
        self._seen[key] = (0, now)
        # Provider error bodies can quote the prompt: only the error's kind unless content logging is on.
        detail = str(error) if self._settings.include_content else str(error).split(":", 1)[0]
        self._settings.logger.warning("judge %s failing (%d more since last report): %s", model, count, detail)


class JudgeRouter:
    """The judge as evaluators see it: the configured model, then its fallbacks, each behind a circuit
    breaker and rate limits; retryable errors are retried with capped exponential backoff and jitter
    (a server's Retry-After wins) until ``retry_on_failure.max_elapsed_time``; permanent errors are
    not retried on the same model but move to the next one, and are logged once per interval."""

    def __init__(self, config: JudgeConfig, settings: Settings, clients: list[Any] | None = None) -> None:
        if clients is None:
            targets: list[JudgeModelConfig | None] = [None, *config.fallbacks]
            clients = [LitellmJudge(config, settings, t) for t in targets]
        self.model = clients[0].model
        self.params: dict[str, Any] = {
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
            "top_p": config.top_p,
            "timeout": config.timeout,
        }
        self._config = config
        self._settings = settings
        self._slots = [_Slot(c, config, settings.clock) for c in clients]
        self._rng = random.Random()
        self._errors = ErrorReporter(settings)

    def _gauge(self, slot: _Slot) -> None:
        state = slot.breaker.state
        self._settings.telemetry.set(
            "otel_judge.judge.breaker.open", 0.0 if state == CircuitBreaker.CLOSED else 1.0, model=slot.client.model
        )

    @property
    def models(self) -> list[str]:
        return [slot.client.model for slot in self._slots]

    def breaker_state(self, model: str) -> str:
        return next(s.breaker.state for s in self._slots if s.client.model == model)

    async def start(self) -> None:
        for slot in self._slots:
            start = getattr(slot.client, "start", None)
            if start is not None:
                await start()

    async def shutdown(self, deadline: float) -> None:
        return None

    async def ready(self) -> None:
        ready = getattr(self._slots[0].client, "ready", None)
        if ready is not None:
            await ready()

    async def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None) -> JudgeReply:
        retry = self._config.retry_on_failure
        clock = self._settings.clock
        telemetry = self._settings.telemetry
        started = clock.monotonic()
        interval = retry.initial_interval
        while True:
            last_error: Exception | None = None
            hint: float | None = None
            retryable = False
            for slot in self._slots:
                if not slot.breaker.allow():
                    continue
                wait = slot.wait_for()
                if wait > 0:
                    if clock.monotonic() - started + wait > retry.max_elapsed_time:
                        continue  # this model's limit would outlast the budget: try the next model
                    await asyncio.sleep(wait)
                if slot.requests is not None:
                    slot.requests.take(1)
                try:
                    reply: JudgeReply = await slot.client.complete(messages, schema)
                except RetryableError as exc:
                    slot.breaker.failure()
                    self._gauge(slot)
                    last_error, retryable = exc, True
                    hint = max(hint or 0.0, exc.retry_after) if exc.retry_after is not None else hint
                    continue
                except PermanentError as exc:
                    slot.breaker.failure()
                    self._gauge(slot)
                    self._errors.report(slot.client.model, exc)
                    last_error = exc
                    continue
                slot.breaker.success()
                self._gauge(slot)
                used = reply.usage.input_tokens + reply.usage.output_tokens
                slot.last_tokens = float(used)
                if slot.tokens is not None:
                    slot.tokens.take(used)
                return reply
            if last_error is None:
                raise RetryableError("every judge model is unavailable (circuit breakers open or rate limits spent)")
            if not retryable or not retry.enabled:
                raise last_error
            wait = (
                hint if hint is not None else interval * (1 + retry.randomization_factor * (2 * self._rng.random() - 1))
            )
            elapsed = clock.monotonic() - started
            if retry.max_elapsed_time and elapsed + wait > retry.max_elapsed_time:
                raise last_error
            telemetry.add("otel_judge.judge.retries")
            await asyncio.sleep(wait)
            interval = min(interval * retry.multiplier, retry.max_interval)
