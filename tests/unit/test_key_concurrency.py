"""The per-key in-flight cap of an ingress replica."""

from __future__ import annotations

import pytest

from rawinfer.contract.errors import RateLimited
from rawinfer.tenancy.limits import KeyConcurrency


def test_the_cap_refuses_past_it_and_frees_on_release():
    c = KeyConcurrency(2)
    first, second = c.enter("k"), c.enter("k")
    with pytest.raises(RateLimited) as e:
        c.enter("k")
    assert e.value.details == {"max_concurrent": 2}
    c.enter("other")()  # per key
    first()
    first()  # a second release of the same slot frees nothing more
    third = c.enter("k")
    with pytest.raises(RateLimited):
        c.enter("k")
    second(), third()
    assert c.inflight == {}
    unbounded = KeyConcurrency(None)
    for _ in range(1000):
        unbounded.enter("k")
    assert unbounded.inflight == {}
