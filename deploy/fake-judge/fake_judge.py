"""A stand-in judge for the demo stack: otel_judge.testing.FakeJudge, listening on a fixed address.

It speaks the OpenAI chat-completions API (POST /v1/chat/completions), so otel-judge calls it as it
would call any OpenAI-compatible judge, and answers the ``score`` evaluator's question with a JSON
``{"score": ..., "explanation": ...}``. The score is a deterministic function of the judged answer,
so the demo's dashboards show differences between routes, models and prompt versions:

* an evasive answer ("I'm not sure", "I don't know", "cannot help") scores low (12-30);
* an answer that points to a human agent scores middling (45-60);
* any other answer scores 70-98, by a hash of its text.

Run it (no API key, nothing leaves the container):

    python deploy/fake-judge/fake_judge.py --host 0.0.0.0 --port 8080

and point otel-judge at it: ``judge.model: openai/gpt-4o-judge``, ``judge.api_base:
http://fake-judge:8080/v1``, any ``api_key``. GET /healthz answers 200 for container health checks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys

from aiohttp import web

from otel_judge.testing import FakeJudge, JudgeRequest

EVASIVE = ("i'm not sure", "i am not sure", "i don't know", "i do not know", "cannot help", "can't help")
HANDOFF = ("human agent", "support team", "contact us")
KEEP_REQUESTS = 100  # FakeJudge records every request; a long-running demo keeps only the last ones


def score(request: JudgeRequest) -> str:
    """The judge's reply to one request: a JSON score from 1 to 100 and a one-line explanation."""
    answer = (request.response_text or "").strip()
    lowered = answer.lower()
    digest = int(hashlib.sha256(answer.encode()).hexdigest()[:8], 16)
    if not answer or any(phrase in lowered for phrase in EVASIVE):
        value, why = 12 + digest % 19, "evasive: the answer does not address the question"
    elif any(phrase in lowered for phrase in HANDOFF):
        value, why = 45 + digest % 16, "partly helpful: hands the user over instead of answering"
    else:
        value, why = 70 + digest % 29, "helpful and on topic"
    return json.dumps({"score": value, "explanation": why})


class DemoJudge(FakeJudge):
    """FakeJudge on a chosen host and port, with a health endpoint and a bounded request log."""

    def __init__(self, host: str, port: int, model: str = "gpt-4o-judge") -> None:
        super().__init__(score, model=model)
        self.host = host
        self.bind_port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/chat/completions", self._answer)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.bind_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        response = await self._handle(request)
        del self.requests[:-KEEP_REQUESTS]
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with DemoJudge(host, port) as judge:
        print(f"fake judge: {judge.model} on {judge.api_base}", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
