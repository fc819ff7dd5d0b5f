"""A lean OpenAI-compatible judge with a fixed latency.

``python -m bench.fake_judge --latency 0.05`` listens on 127.0.0.1 (ephemeral port), prints
``ready <port>`` and answers ``POST /v1/chat/completions`` after sleeping ``latency`` seconds with a
``chat.completion`` whose content is ``"75"`` and a usage block (the reply
:class:`otel_judge.testing.FakeJudge` gives, without parsing the request (it only keeps a reference
to the last one), so the harness spends as little CPU as possible). ``GET /stats`` returns
``{"requests": n, "in_flight": n}``; ``GET /last`` the last request as received (``{"path",
"headers", "body"}``), so another client can send exactly what otel-judge sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

from bench.lifecycle import until_terminated

__all__ = ["FakeJudgeServer"]


class FakeJudgeServer:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.requests = 0
        self.in_flight = 0
        self.last: tuple[web.Request, bytes] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/chat/completions", self._complete)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/last", self._last)
        return app

    async def _complete(self, request: web.Request) -> web.Response:
        self.last = (request, await request.read())
        self.in_flight += 1
        try:
            await asyncio.sleep(self.latency)  # the judge model "thinking"
        finally:
            self.in_flight -= 1
        self.requests += 1
        body = {
            "id": f"chatcmpl-bench{self.requests:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake-judge",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "75"}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132},
        }
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "in_flight": self.in_flight})

    async def _last(self, request: web.Request) -> web.Response:
        if self.last is None:
            return web.json_response({}, status=404)
        last, body = self.last
        return web.json_response({"path": last.path, "headers": dict(last.headers), "body": body.decode()})


async def serve(latency: float) -> None:
    server = FakeJudgeServer(latency)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"ready {port}", flush=True)
    await until_terminated()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    args = parser.parse_args()
    asyncio.run(serve(args.latency))


if __name__ == "__main__":
    main()
