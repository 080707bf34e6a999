"""A semantic prompt cache with a verified error bound (vCache, Schroeder et al., arXiv 2502.03771).

Pure Python, no Ray: `policy` (the per-entry decision rule), `store` (partitioned hnswlib indexes,
LRU eviction, snapshots), `judge` (is a fresh answer the same as a cached one), `keys` (what a
request's partition is), `cache` (the three together: what the Serve deployment in
deployments/semantic_cache.py holds) and `client` (the ingress's side); settings are
`rawinfer.core.settings.SemanticCacheSettings`.
"""
