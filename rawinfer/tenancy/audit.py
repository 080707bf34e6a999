"""The admin API's audit trail: one row per admin call (who, what, the answer), written before
the answer goes out, and read back through `GET /v1/admin/audit`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from rawinfer.tenancy.keys import KeyInfo
from rawinfer.tenancy.store import Store
from rawinfer.tenancy.tables import AdminAction, utc


def record(store: Store, actor: KeyInfo, method: str, path: str, status: int) -> None:
    with store.session.begin() as s:
        s.add(
            AdminAction(
                key_id=actor.id,
                org_id=actor.org_id,
                method=method[:8],
                path=path[:300],
                status=int(status),
            )
        )


def actions(store: Store, org_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The latest admin calls, newest first; of one organisation's admin keys when given."""
    q = select(AdminAction).order_by(AdminAction.id.desc()).limit(limit)
    if org_id is not None:
        q = q.where(AdminAction.org_id == org_id)
    with store.session() as s:
        return [
            {
                "id": a.id,
                "at": utc(a.created_at).isoformat(),
                "key_id": a.key_id,
                "org_id": a.org_id,
                "method": a.method,
                "path": a.path,
                "status": a.status,
            }
            for a in s.scalars(q)
        ]
