"""Generated code of ``proto/otel_judge/quality/v1/quality.proto`` (``make proto``; do not edit by hand)."""
