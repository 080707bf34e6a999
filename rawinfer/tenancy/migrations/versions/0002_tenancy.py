"""Tenancy: key targets, per-key and per-namespace limits (rpm, tpm), the usage ledger's table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as b:
        b.add_column(sa.Column("targets", sa.JSON(), nullable=True))
        b.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        b.add_column(sa.Column("tpm", sa.Integer(), nullable=True))
    with op.batch_alter_table("namespaces") as b:
        b.add_column(sa.Column("rpm", sa.Integer(), nullable=True))
        b.add_column(sa.Column("tpm", sa.Integer(), nullable=True))
    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("namespace_id", sa.String(80), nullable=True),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("media_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_usage_namespace_time", "usage_records", ["namespace_id", "created_at"])
    op.create_index("ix_usage_key_time", "usage_records", ["key_id", "created_at"])
    op.create_index("ix_usage_time", "usage_records", ["created_at"])


def downgrade() -> None:
    op.drop_table("usage_records")  # its indexes go with it
    with op.batch_alter_table("namespaces") as b:
        b.drop_column("tpm")
        b.drop_column("rpm")
    with op.batch_alter_table("api_keys") as b:
        b.drop_column("tpm")
        b.drop_column("rpm")
        b.drop_column("targets")
