"""The evaluations table (one row per score) and its slice index table.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration is frozen: it spells out its types instead of importing the live schema.
_Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "otel_judge_evaluations",
        sa.Column("evaluation_id", sa.String(length=64), nullable=False),
        sa.Column("score_key", sa.String(length=255), nullable=False),
        sa.Column("score_index", sa.Integer(), nullable=False),
        sa.Column("evaluator", sa.String(length=128), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("extra", _Json, nullable=True),
        sa.Column("sampling_probability", sa.Float(), nullable=True),
        sa.Column("slices", _Json, nullable=False),
        sa.Column("judged_model", sa.String(length=255), nullable=True),
        sa.Column("response_id", sa.String(length=255), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("judge_model", sa.String(length=255), nullable=True),
        sa.Column("evaluator_type", sa.String(length=64), nullable=True),
        sa.Column("evaluator_version", sa.String(length=64), nullable=True),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("judge_params", _Json, nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("evaluation_id", "score_key", name="pk_otel_judge_evaluations"),
    )
    op.create_index("ix_otel_judge_evaluations_evaluator_time_ns", "otel_judge_evaluations", ["evaluator", "time_ns"])
    op.create_index("ix_otel_judge_evaluations_time_ns", "otel_judge_evaluations", ["time_ns"])
    op.create_index("ix_otel_judge_evaluations_trace_id_span_id", "otel_judge_evaluations", ["trace_id", "span_id"])
    op.create_table(
        "otel_judge_evaluation_slices",
        sa.Column("evaluation_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("time_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("evaluation_id", "name", name="pk_otel_judge_evaluation_slices"),
    )
    op.create_index(
        "ix_otel_judge_evaluation_slices_name_value_evaluation_id",
        "otel_judge_evaluation_slices",
        ["name", "value", "evaluation_id"],
    )
    op.create_index("ix_otel_judge_evaluation_slices_time_ns", "otel_judge_evaluation_slices", ["time_ns"])


def downgrade() -> None:
    op.drop_table("otel_judge_evaluation_slices")
    op.drop_table("otel_judge_evaluations")
