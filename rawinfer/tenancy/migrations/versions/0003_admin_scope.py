"""Admin scope and audit: superuser admin keys, and a record of every admin API call.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as b:
        b.add_column(
            sa.Column("is_superuser", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # the admin keys made before scoping managed every organisation: they keep doing so
    op.execute(sa.text("UPDATE api_keys SET is_superuser = is_admin"))
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
    )
    op.create_index("ix_admin_actions_org_time", "admin_actions", ["org_id", "created_at"])


def downgrade() -> None:
    op.drop_table("admin_actions")
    with op.batch_alter_table("api_keys") as b:
        b.drop_column("is_superuser")
