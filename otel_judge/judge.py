"""The judge model: an OpenAI-compatible HTTP client (the fast path) or litellm. The only module
that imports litellm.

Two clients answer the same :class:`Judge` protocol and behave the same (errors, retries, structured
output, token and cost accounting; ``tests/test_judge_fastpath.py`` runs both against one fake judge):

* :class:`OpenAICompatibleJudge`, for providers with an OpenAI-compatible chat API
  (:data:`otel_judge.providers.PROVIDERS`): provider, URL, credentials, price and structured-output
  support are resolved once per judge model, and each call is one POST over a pooled
  ``aiohttp.ClientSession`` (about 0.2 ms of CPU against litellm's 4-6 ms). litellm is never imported.
* :class:`LitellmJudge`, for every other provider (``litellm.acompletion``). ``import litellm`` is
  slow (seconds) and heavy, so it runs in a worker thread started by :meth:`LitellmJudge.start`,
  never on the receive path; judge calls wait for it.

``judge.client`` chooses (:func:`build_judge_client`): ``auto`` (the fast path when the provider has
an OpenAI-compatible API), ``openai`` or ``litellm``. Foreign exceptions (litellm's, aiohttp's, HTTP
statuses) are translated here, once, into :class:`RetryableError`, :class:`PermanentError` and
:class:`JudgeTimeoutError`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from otel_judge import __version__
from otel_judge.component import Settings
from otel_judge.config import JudgeConfig, JudgeModelConfig
from otel_judge.errors import ConfigError, JudgeTimeoutError, PermanentError, RetryableError
from otel_judge.model import JudgeUsage
from otel_judge.providers import (
    ModelPrices,
    OpenAIRoute,
    load_prices,
    request_params,
    resolve_route,
    supports_schema,
    system_as_user,
)

__all__ = [
    "USAGE",
    "CircuitBreaker",
    "Judge",
    "JudgeReply",
    "JudgeRouter",
    "LitellmJudge",
    "OpenAICompatibleJudge",
    "UsageMeter",
    "build_judge_client",
]


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
    """The server's Retry-After (seconds). litellm keeps the answer's headers in
    ``litellm_response_headers``; its ``response`` is often a stand-in without them."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        value = headers.get("retry-after") if headers is not None else None
        if value is not None:
            return _seconds(value)
    return None


def _seconds(value: str | None) -> float | None:
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
        return _answered(self._settings, self.model, text, JudgeUsage(input_tokens, output_tokens, cost))

    def _cost(self, litellm: Any, response: Any, input_tokens: int, output_tokens: int) -> float | None:
        configured = _configured_cost(self._config, input_tokens, output_tokens)
        if configured is not None:
            return configured
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown model or price: the call still counts, without a cost
            return None


def _answered(settings: Settings, model: str, text: str, usage: JudgeUsage) -> JudgeReply:
    """A successful call, counted the same way by both clients: telemetry and the judgment's meter."""
    telemetry = settings.telemetry
    telemetry.add("otel_judge.judge.calls", outcome="ok", model=model)
    telemetry.add("otel_judge.judge.tokens", usage.input_tokens, type="input")
    telemetry.add("otel_judge.judge.tokens", usage.output_tokens, type="output")
    if usage.cost_usd:
        telemetry.add("otel_judge.judge.cost", usage.cost_usd)
    meter = USAGE.get()
    if meter is not None:
        meter.add(usage, model)
    return JudgeReply(text=text, model=model, usage=usage)


def _configured_cost(config: JudgeConfig, input_tokens: int, output_tokens: int) -> float | None:
    pricing = config.pricing
    if pricing is None:
        return None
    return (input_tokens * pricing.input_per_million_tokens + output_tokens * pricing.output_per_million_tokens) / 1e6


# HTTP status -> the name of the exception litellm raises for it (so both clients' errors read alike
# in logs and span attributes) and whether retrying can help.
_HTTP_ERRORS: dict[int, tuple[str, bool]] = {
    400: ("BadRequestError", False),
    401: ("AuthenticationError", False),
    403: ("PermissionDeniedError", False),
    404: ("NotFoundError", False),
    408: ("Timeout", True),
    409: ("APIError", True),
    422: ("UnprocessableEntityError", False),
    429: ("RateLimitError", True),
    500: ("InternalServerError", True),
    502: ("BadGatewayError", True),
    503: ("ServiceUnavailableError", True),
    504: ("Timeout", True),
}


def http_error(model: str, status: int, body: bytes, retry_after: str | None) -> Exception:
    """Map a judge endpoint's error answer to our error kinds, as :func:`translate_error` maps the
    exception litellm raises for the same answer: 408/409/429/5xx retryable (``Retry-After`` kept),
    other 4xx permanent."""
    name, retryable = _HTTP_ERRORS.get(status, ("InternalServerError" if status >= 500 else "APIError", status >= 500))
    detail = body[:300].decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            detail = error["message"][:300]
        elif isinstance(error, str):
            detail = error[:300]
    except (ValueError, AttributeError):
        pass
    message = f"{name}: {model}: HTTP {status}: {detail}"
    if not retryable:
        return PermanentError(message)
    if name == "Timeout":
        return JudgeTimeoutError(message)
    return RetryableError(message, _seconds(retry_after))


class OpenAICompatibleJudge:
    """One judge model behind an OpenAI-compatible ``/chat/completions`` endpoint, called directly.

    What litellm works out on every call is resolved once (:func:`otel_judge.providers.resolve_route`:
    URL, headers with the credentials, the model name on the wire, reasoning-model parameters; at
    :meth:`start`, in a thread: the model's price and structured-output support from litellm's
    bundled price list). Each call is one POST over a pooled ``aiohttp.ClientSession`` with at most
    ``judge.max_concurrency`` connections. The request is the one litellm sends (same parameters, same
    ``response_format``), and the answer is accounted the same way (tokens, cost, telemetry).
    """

    def __init__(self, config: JudgeConfig, settings: Settings, model: str, route: OpenAIRoute) -> None:
        self.model = model
        self.route = route
        self._config = config
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._proxy: tuple[Any, Any] = (None, None)  # (proxy URL, proxy auth) from the environment
        self._prices: asyncio.Future[ModelPrices] | None = None
        self._resolved: ModelPrices | None = None
        self._schema = False
        self._headers = dict(route.headers) | {"User-Agent": f"otel-judge/{__version__}"}
        self._body: dict[str, Any] = {}  # model and parameters, once the price list is read
        self._system_as_user = False

    async def start(self) -> None:
        """Read the model's price (litellm's price list, parsed once per process) in a thread."""
        if self._prices is None:
            self._prices = asyncio.ensure_future(asyncio.to_thread(load_prices, self.route.provider))

    async def ready(self) -> None:
        if self._resolved is None:
            await self.start()
            assert self._prices is not None
            prices = await self._prices
            info = prices.get(self.route.model)
            config = self._config
            self._schema = supports_schema(self.route, prices)
            self._system_as_user = system_as_user(self.route, info)
            self._body = {"model": self.route.model}
            self._body |= request_params(self.route, info, config.temperature, config.max_tokens, config.top_p)
            self._resolved = prices

    async def shutdown(self, deadline: float) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._config.max_concurrency, ttl_dns_cache=300)
            # HTTP(S)_PROXY / NO_PROXY are honoured, as litellm (httpx) does, but looked up once here:
            # aiohttp's trust_env would look them (and ~/.netrc) up in a thread on every request.
            self._proxy = _env_proxy(self.route.url)
            # No cookie jar: a judge API sets none worth keeping, and filtering them costs per request.
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def request_body(self, messages: list[dict[str, str]], schema: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON body of one call."""
        body = dict(self._body)
        if self._system_as_user:
            messages = [m | {"role": "user"} if m.get("role") == "system" else m for m in messages]
        body["messages"] = messages
        if schema is not None and self._schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": schema, "strict": True},
            }
        return body

    async def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None) -> JudgeReply:
        await self.ready()
        telemetry = self._settings.telemetry
        payload = json.dumps(self.request_body(messages, schema)).encode()
        session = self._client()
        timeout = self._config.timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):  # a hung call is cancelled at its deadline
                proxy, proxy_auth = self._proxy
                async with session.post(
                    self.route.url, data=payload, headers=self._headers, proxy=proxy, proxy_auth=proxy_auth
                ) as response:
                    status = response.status
                    raw = await response.read()
                    retry_after = response.headers.get("retry-after")
        except TimeoutError:
            telemetry.add("otel_judge.judge.calls", outcome="JudgeTimeoutError", model=self.model)
            raise JudgeTimeoutError(f"{self.model}: no answer within {timeout:g}s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            telemetry.add("otel_judge.judge.calls", outcome="RetryableError", model=self.model)
            raise RetryableError(f"APIConnectionError: {self.model}: {type(exc).__name__}: {exc}"[:400]) from None
        finally:
            telemetry.record("otel_judge.judge.duration", time.monotonic() - started)
        if status >= 400:
            error = http_error(self.model, status, raw, retry_after)
            telemetry.add("otel_judge.judge.calls", outcome=type(error).__name__, model=self.model)
            raise error
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"]["content"] or ""
        except ValueError:
            telemetry.add("otel_judge.judge.calls", outcome="RetryableError", model=self.model)
            raise RetryableError(f"APIError: {self.model}: the judge's answer is not JSON") from None
        except (KeyError, IndexError, TypeError) as exc:
            telemetry.add("otel_judge.judge.calls", outcome="PermanentError", model=self.model)
            raise PermanentError(f"judge reply has no message: {exc!r}") from None
        if not isinstance(text, str):
            text = str(text)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        input_tokens = int(usage.get("prompt_tokens") or 0)
        output_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        cost = _configured_cost(self._config, input_tokens, output_tokens)
        if cost is None and isinstance(usage.get("cost"), int | float):
            cost = float(usage["cost"])  # the provider's own figure (OpenRouter), as litellm takes it
        if cost is None:
            cost = self._cost(data.get("model"), input_tokens, output_tokens, cached)
        return _answered(self._settings, self.model, text, JudgeUsage(input_tokens, output_tokens, cost))

    def _cost(self, answered: Any, input_tokens: int, output_tokens: int, cached: int) -> float | None:
        """litellm prices a call by the model the answer names, else by the configured one."""
        prices = self._resolved
        assert prices is not None
        info = prices.get(answered) if isinstance(answered, str) and answered else None
        if info is None:
            info = prices.get(self.route.model)
        return info.cost(input_tokens, output_tokens, cached) if info is not None else None


def _env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy (and its credentials) the environment sets for ``url``, as httpx would use it."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


JudgeClient = LitellmJudge | OpenAICompatibleJudge


def build_judge_client(
    config: JudgeConfig, settings: Settings, target: JudgeModelConfig | None = None, *, path: str = "judge"
) -> JudgeClient:
    """The client of one judge model as ``judge.client`` asks: ``auto`` takes the fast path when the
    provider has an OpenAI-compatible API (:mod:`otel_judge.providers`), litellm otherwise; ``openai``
    requires the fast path (a ConfigError under ``path`` otherwise); ``litellm`` always uses litellm."""
    model = target.model if target is not None else config.model
    if model is None:
        raise ValueError("a judge client needs judge.model")
    if config.client == "litellm":
        return LitellmJudge(config, settings, target)
    api_base = target.api_base if target is not None else config.api_base
    secret = target.api_key if target is not None else config.api_key
    route = resolve_route(model, api_base, secret.get_secret_value() if secret is not None else None)
    if route is not None:
        return OpenAICompatibleJudge(config, settings, model, route)
    if config.client == "openai":
        raise ConfigError(
            [
                f"{path}.model: {model!r} cannot be reached without litellm (a provider without an OpenAI-compatible"
                " API, Azure without an API key, or a server without api_base); set judge.client: auto or litellm"
            ]
        )
    return LitellmJudge(config, settings, target)


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
            clients = [build_judge_client(config, settings)]
            clients += [
                build_judge_client(config, settings, t, path=f"judge.fallbacks[{i}]")
                for i, t in enumerate(config.fallbacks)
            ]
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
        for slot in self._slots:
            shutdown = getattr(slot.client, "shutdown", None)
            if shutdown is not None:
                await shutdown(deadline)

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
