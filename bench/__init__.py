"""The otel-judge benchmark: ``.venv/bin/python bench/run.py`` (see bench/README.md).

Every piece runs in its own process so CPU and memory are measured per role:
``loadgen`` (sends OTLP), ``forwarder`` (the reference pass-through), ``sink`` (the next hop, which
counts spans and measures delay), ``fake_judge`` (an OpenAI-compatible server with a fixed latency)
and ``otel-judge serve`` itself. ``run`` orchestrates them.
"""
