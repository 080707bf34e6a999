"""Tenancy: organisations, namespaces and keys (store), rate limits (limits), the usage ledger
(ledger), the admin API (admin) and the database migrations. See docs/tenancy.md."""
