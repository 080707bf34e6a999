"""Usage rows: their shape (`usage_row`), idempotent inserts and the grouped summaries that
`GET /v1/usage` and the CLI report."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from rawinfer.tenancy.tables import USAGE_COLUMNS, USAGE_DEFAULTS, UsageRecord, utc

GROUP_BY = ("key", "target", "task", "status", "day")
_LIMITS = {
    "request_id": 128,
    "org_id": 32,
    "key_id": 32,
    "namespace_id": 80,
    "target": 300,
    "backend": 128,
    "task": 32,
}


_INTS = ("status", "prompt_tokens", "completion_tokens", "media_bytes")


_FLOATS = ("audio_seconds", "latency_ms", "cost")


def usage_row(**fields: Any) -> dict[str, Any]:
    """A ledger row from the request path's values, cleaned so that the database never refuses
    it (strings cut to their column's length, numbers coerced, None as 0)."""
    row = {k: v for k, v in fields.items() if v is not None}
    for k, n in _LIMITS.items():
        if k in row:
            row[k] = str(row[k])[:n]
    for k in _INTS:
        row[k] = int(row.get(k) or 0)
    for k in _FLOATS:
        row[k] = float(row.get(k) or 0.0)
    row["cache_hit"] = bool(row.get("cache_hit", False))
    return row


# ------------------------------------------------ the usage table (Store delegates here)
def insert_usage(engine, rows: list[dict[str, Any]]) -> int:
    """Inserts usage rows in one transaction; a row whose `id` is already stored is skipped
    (so a batch may be re-sent after a failure). Unknown fields are ignored, missing ones take
    their defaults. Returns how many rows were new."""
    if not rows:
        return 0
    clean = []
    for r in rows:
        row = dict(USAGE_DEFAULTS)
        row.update((c, r[c]) for c in USAGE_COLUMNS if r.get(c) is not None)
        created = row["created_at"] or datetime.now(timezone.utc)
        row["created_at"] = utc(
            datetime.fromisoformat(created) if isinstance(created, str) else created
        )
        clean.append(row)
    table = UsageRecord.__table__
    dialect = engine.dialect.name
    new = 0
    with engine.begin() as conn:
        for i in range(0, len(clean), 500):
            chunk = clean[i : i + 500]
            upsert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
            if upsert is not None:
                stmt = (
                    upsert(table)
                    .on_conflict_do_nothing(index_elements=["id"])
                    .returning(table.c.id)
                )
                new += len(conn.execute(stmt, chunk).all())
            else:
                known = set(
                    conn.scalars(select(table.c.id).where(table.c.id.in_([r["id"] for r in chunk])))
                )
                todo = [r for r in chunk if r["id"] not in known]
                if todo:
                    conn.execute(insert(table), todo)
                new += len(todo)
    return new


def summarize_usage(
    engine,
    namespace_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: str | None = None,
    *,
    key_id: str | None = None,
) -> list[dict[str, Any]]:
    """Totals of a namespace's usage in [start, end) (either open), one row per group
    (`group_by` in key, target, task, status, day (UTC); None: one row of totals)."""
    if group_by is not None and group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    t = UsageRecord
    if group_by == "day":
        group = (
            func.strftime("%Y-%m-%d", t.created_at)
            if engine.dialect.name == "sqlite"
            else func.to_char(func.timezone("UTC", t.created_at), "YYYY-MM-DD")
        )
    else:
        group = {"key": t.key_id, "target": t.target, "task": t.task, "status": t.status}.get(
            group_by
        )
    fresh, cached = t.cache_hit.is_not(True), t.cache_hit.is_(True)
    cols = [
        func.count().label("requests"),
        # tokens a model spent, and (separately) those of answers served from the semantic cache
        func.coalesce(func.sum(case((fresh, t.prompt_tokens), else_=0)), 0).label("prompt_tokens"),
        func.coalesce(func.sum(case((fresh, t.completion_tokens), else_=0)), 0).label(
            "completion_tokens"
        ),
        func.coalesce(
            func.sum(case((cached, t.prompt_tokens + t.completion_tokens), else_=0)), 0
        ).label("cached_tokens"),
        func.coalesce(func.sum(t.audio_seconds), 0.0).label("audio_seconds"),
        func.coalesce(func.sum(t.media_bytes), 0).label("media_bytes"),
        func.coalesce(func.sum(case((t.cache_hit.is_(True), 1), else_=0)), 0).label("cache_hits"),
        func.coalesce(func.sum(case((t.status >= 400, 1), else_=0)), 0).label("errors"),
        func.coalesce(func.avg(t.latency_ms), 0.0).label("latency_ms_avg"),
        func.coalesce(func.sum(t.cost), 0.0).label("cost"),
    ]
    q = select(*([group.label("group")] if group is not None else []), *cols).where(
        t.namespace_id == namespace_id
    )
    if start is not None:
        q = q.where(t.created_at >= utc(start))
    if end is not None:
        q = q.where(t.created_at < utc(end))
    if key_id is not None:
        q = q.where(t.key_id == key_id)
    if group is not None:
        q = q.group_by(group).order_by(group)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q).mappings():
            row = {group_by: r["group"]} if group is not None else {}
            row.update(
                requests=int(r["requests"]),
                prompt_tokens=int(r["prompt_tokens"]),
                completion_tokens=int(r["completion_tokens"]),
            )
            row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
            row["cached_tokens"] = int(r["cached_tokens"])
            row.update(
                audio_seconds=round(float(r["audio_seconds"]), 3),
                media_bytes=int(r["media_bytes"]),
                cache_hits=int(r["cache_hits"]),
                errors=int(r["errors"]),
                latency_ms_avg=round(float(r["latency_ms_avg"]), 3),
                cost=round(float(r["cost"]), 12),
            )
            out.append(row)
    return out
