"""The judge model, reached through litellm. The only module that imports litellm.

litellm's exceptions are translated here, once, into :class:`RetryableError`,
:class:`PermanentError` and :class:`JudgeTimeoutError`. ``import litellm`` is slow (seconds) and
heavy, so it runs in a worker thread started by :meth:`LitellmJudge.start`, never on the receive
path; judge calls wait for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from otel_judge.component import Settings
from otel_judge.config import JudgeConfig
from otel_judge.errors import JudgeTimeoutError, PermanentError, RetryableError
from otel_judge.model import JudgeUsage

__all__ = ["USAGE", "Judge", "JudgeReply", "LitellmJudge", "UsageMeter"]


class UsageMeter:
    """Adds up the judge usage of one judgment (an evaluator may make several calls)."""

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd: float | None = None

    def add(self, usage: JudgeUsage) -> None:
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

    async def complete(self, messages: list[dict[str, str]]) -> JudgeReply:
        """One judge call. Raises RetryableError / PermanentError / JudgeTimeoutError."""
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
    """A judge model reached with ``litellm.acompletion`` (any provider litellm supports)."""

    def __init__(self, config: JudgeConfig, settings: Settings) -> None:
        if config.model is None:
            raise ValueError("LitellmJudge needs judge.model")
        self.model = config.model
        self._config = config
        self._settings = settings
        self._litellm: asyncio.Future[Any] | None = None
        self._params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        if config.top_p is not None:
            self._params["top_p"] = config.top_p
        if config.api_base:
            self._params["api_base"] = config.api_base
        if config.api_key is not None:
            self._params["api_key"] = config.api_key.get_secret_value()

    async def start(self) -> None:
        """Begin importing litellm in a thread; returns at once."""
        if self._litellm is None:
            self._litellm = asyncio.ensure_future(asyncio.to_thread(_import_litellm))

    async def shutdown(self, deadline: float) -> None:
        return None

    async def ready(self) -> None:
        await self.start()
        assert self._litellm is not None
        await self._litellm

    async def complete(self, messages: list[dict[str, str]]) -> JudgeReply:
        await self.ready()
        assert self._litellm is not None
        litellm = self._litellm.result()
        telemetry = self._settings.telemetry
        started = time.monotonic()
        try:
            response = await litellm.acompletion(
                model=self.model,
                messages=messages,
                timeout=self._config.timeout,
                num_retries=0,
                max_retries=0,  # retries are ours (with our budget and backoff), not the SDK's
                **self._params,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = translate_error(exc)
            telemetry.add("otel_judge.judge.calls", outcome=type(error).__name__)
            raise error from None
        finally:
            telemetry.record("otel_judge.judge.duration", time.monotonic() - started)
        try:
            text = response.choices[0].message.content or ""
        except (AttributeError, IndexError) as exc:
            telemetry.add("otel_judge.judge.calls", outcome="PermanentError")
            raise PermanentError(f"judge reply has no message: {exc}") from None
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = self._cost(litellm, response, input_tokens, output_tokens)
        telemetry.add("otel_judge.judge.calls", outcome="ok")
        telemetry.add("otel_judge.judge.tokens", input_tokens, type="input")
        telemetry.add("otel_judge.judge.tokens", output_tokens, type="output")
        if cost:
            telemetry.add("otel_judge.judge.cost", cost)
        usage = JudgeUsage(input_tokens, output_tokens, cost)
        meter = USAGE.get()
        if meter is not None:
            meter.add(usage)
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
