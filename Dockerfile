# syntax=docker/dockerfile:1
# otel-judge container image. Build from the repository root:
#
#   docker build -t otel-judge .                  # the runtime image (default target)
#   docker build --target demo -t otel-judge-demo-app .   # + the OpenTelemetry SDK, for deploy/demo-app
#
# Stages: `builder` installs exactly what requirements.lock pins (every file checked against its
# hash, no dependency resolution, so nothing unpinned gets in) into a virtualenv, then otel-judge
# itself; `runtime` copies that virtualenv onto a fresh slim Python, without pip's caches or build
# tools, and runs as an unprivileged user. docs/deployment.md describes the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/otel-judge
WORKDIR /src
# The lock file first: this layer is rebuilt only when the dependencies change.
COPY requirements.lock ./
RUN /opt/otel-judge/bin/pip install --require-hashes --no-deps -r requirements.lock
# setuptools and wheel come from the lock file too, hence --no-build-isolation (no unpinned download).
COPY pyproject.toml README.md ./
COPY otel_judge ./otel_judge
RUN /opt/otel-judge/bin/pip install --no-deps --no-build-isolation . \
    && /opt/otel-judge/bin/python -m compileall -q /opt/otel-judge/lib

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="otel-judge" \
      org.opencontainers.image.description="LLM-as-judge scores for GenAI spans, in the OpenTelemetry pipeline you already run" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid (Kubernetes runAsNonRoot can check it); no shell, no home.
RUN groupadd --system --gid 10001 otel-judge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin otel-judge \
    && mkdir -p /etc/otel-judge /var/lib/otel-judge \
    && chown 10001:10001 /var/lib/otel-judge
COPY --from=builder /opt/otel-judge /opt/otel-judge
COPY deploy/otel-judge.yaml /etc/otel-judge/otel-judge.yaml
# LITELLM_LOCAL_MODEL_COST_MAP: litellm's price list from the installed package, not fetched from
# the internet at start-up.
ENV PATH=/opt/otel-judge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
USER 10001:10001
WORKDIR /var/lib/otel-judge
# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 13133 /healthz /readyz /metrics (service.health), 8787 quality API.
EXPOSE 4317 4318 13133 8787
# Liveness as the orchestrator sees it: service.health's /healthz (on in the default config).
# Python's own HTTP client: the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:13133/healthz', timeout=2)"]
ENTRYPOINT ["otel-judge"]
CMD ["serve", "--config", "/etc/otel-judge/otel-judge.yaml"]

# --------------------------------------------------------------------------- demo (deploy/demo-app)
FROM runtime AS demo
USER 0
COPY deploy/demo-app/requirements.txt /tmp/demo-requirements.txt
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /opt/otel-judge/bin/pip install --require-hashes --no-deps -r /tmp/demo-requirements.txt \
    && rm /tmp/demo-requirements.txt
USER 10001:10001
HEALTHCHECK NONE

# The default target is the last stage: make it the runtime image again.
FROM runtime
