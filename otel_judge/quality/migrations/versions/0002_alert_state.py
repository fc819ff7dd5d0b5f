"""The regression detector's alert state, shared by replicas and kept over restarts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A migration is frozen: it spells out its types instead of importing the live schema.
_Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "otel_judge_alert_state",
        sa.Column("condition_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("score_key", sa.String(length=255), nullable=False),
        sa.Column("slice", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("alert", _Json, nullable=False),
        sa.PrimaryKeyConstraint("condition_id", name="pk_otel_judge_alert_state"),
    )
    op.create_index("ix_otel_judge_alert_state_status", "otel_judge_alert_state", ["status"])


def downgrade() -> None:
    op.drop_table("otel_judge_alert_state")
