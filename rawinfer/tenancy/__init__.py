"""Tenancy: organisations, namespaces and keys (tables, keys, store), usage (usage, ledger), rate
limits (limits, shared_limiter), the admin API (admin) and the database migrations. Reference:
docs/tenancy.md; design notes: docs/notes/tenancy.md."""
