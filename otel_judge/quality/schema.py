"""The evaluation store's tables, as SQLAlchemy Core metadata (the migrations must agree with it).

``otel_judge_evaluations`` has one row per score of one evaluation, keyed by
``(evaluation_id, score_key)``; an evaluation that ended without a score (an error status) has one
row whose ``score_key`` is the evaluator name and whose ``value`` is NULL. ``slices`` keeps the
evaluation's slice values as JSON, and ``otel_judge_evaluation_slices`` repeats them one row per
``(evaluation, slice name)`` so that filtering by slice values is an indexed lookup on both
backends. Times are integer nanoseconds since the epoch, as in OTLP.

``otel_judge_alert_state`` is the regression detector's alert state, shared by replicas and kept
over restarts: one row per alert condition (kind, score key, slice), keyed by ``condition_id``, the
SHA-256 of the condition as canonical JSON (``slice`` keeps that JSON), with its ``status``
(``firing`` / ``resolved``), the ``alert_id`` of its current episode, when it last changed and the
alert itself (:meth:`otel_judge.quality.alerts.Alert.to_state`).

Table names carry an ``otel_judge_`` prefix, and the migration version table is
``otel_judge_alembic_version``, so the store can share a database with an application's own tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["ALERT_STATE", "EVALUATIONS", "METADATA", "SLICES", "VERSION_TABLE"]

VERSION_TABLE = "otel_judge_alembic_version"

# Explicit constraint names: the same on SQLite and PostgreSQL, and what the migrations create.
METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Json = JSON().with_variant(JSONB(), "postgresql")

EVALUATIONS = Table(
    "otel_judge_evaluations",
    METADATA,
    Column("evaluation_id", String(64), nullable=False),
    Column("score_key", String(255), nullable=False),
    Column("score_index", Integer, nullable=False),  # the score's position in its evaluation
    Column("evaluator", String(128), nullable=False),
    Column("time_ns", BigInteger, nullable=False),  # when the judgment finished
    Column("trace_id", String(32), nullable=False),  # hex
    Column("span_id", String(16), nullable=False),  # hex
    Column("status", String(32), nullable=False),
    Column("value", Float, nullable=True),
    Column("label", String(255), nullable=True),
    Column("passed", Boolean, nullable=True),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("higher_is_better", Boolean, nullable=False),
    Column("explanation", Text, nullable=True),  # cut to store.max_explanation_chars
    Column("error", Text, nullable=True),
    Column("extra", _Json, nullable=True),  # Score.extra (e.g. a panel's disagreement)
    Column("sampling_probability", Float, nullable=True),
    Column("slices", _Json, nullable=False),
    Column("judged_model", String(255), nullable=True),
    Column("response_id", String(255), nullable=True),
    Column("late", Boolean, nullable=False),
    # Provenance: what produced the score.
    Column("judge_model", String(255), nullable=True),
    Column("evaluator_type", String(64), nullable=True),
    Column("evaluator_version", String(64), nullable=True),
    Column("config_hash", String(64), nullable=True),
    Column("judge_params", _Json, nullable=True),
    # The evaluation's judge usage, repeated on each of its scores (sum it over distinct evaluation ids).
    Column("cost_usd", Float, nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    PrimaryKeyConstraint("evaluation_id", "score_key"),
    Index(None, "evaluator", "time_ns"),
    Index(None, "time_ns"),
    Index(None, "trace_id", "span_id"),
)

SLICES = Table(
    "otel_judge_evaluation_slices",
    METADATA,
    Column("evaluation_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("value", String(255), nullable=False),
    Column("time_ns", BigInteger, nullable=False),  # the evaluation's, for retention and windows
    PrimaryKeyConstraint("evaluation_id", "name"),
    Index(None, "name", "value", "evaluation_id"),
    Index(None, "time_ns"),
)

ALERT_STATE = Table(
    "otel_judge_alert_state",
    METADATA,
    Column("condition_id", String(64), nullable=False),  # sha256 hex of [kind, score_key, sorted slice items]
    Column("kind", String(32), nullable=False),
    Column("score_key", String(255), nullable=False),
    Column("slice", Text, nullable=False),  # canonical JSON: sorted [[name, value], ...]
    Column("status", String(16), nullable=False),  # firing | resolved
    Column("alert_id", String(64), nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("alert", _Json, nullable=False),
    PrimaryKeyConstraint("condition_id"),
    Index(None, "status"),
)
