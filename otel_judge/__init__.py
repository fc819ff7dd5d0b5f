"""otel-judge: LLM-as-judge scores for GenAI spans, inside the OpenTelemetry pipeline.

Importing the package is cheap: litellm is imported only for a judge that goes through litellm
(not for OpenAI-compatible providers), when it starts, in a thread.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("otel-judge")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
