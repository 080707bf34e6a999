"""Rate limits per key and per namespace (requests and tokens per minute), Ray-free: subjects,
windows, grants, the headers, and the `LocalLimiter` each ingress replica spends leases with.
The model and its guarantees: docs/notes/tenancy.md."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from rawinfer.contract.errors import RateLimited
from rawinfer.core.settings import LimitSettings

log = logging.getLogger("rawinfer.limits")
REQUESTS, TOKENS = "requests", "tokens"
SharedCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def effective(own: int | None, default: int | None) -> int | None:
    """A stored limit over the configured default: None -> default; 0 -> unlimited; N -> N."""
    value = default if own is None else own
    return value if value else None


@dataclass(frozen=True)
class Subject:
    name: str  # unique: "key:<id>:rpm"
    limit: int
    kind: str = REQUESTS  # or TOKENS
    scope: str = "key"  # or "namespace"

    def wire(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "kind": self.kind, "scope": self.scope}


def subjects_for(key: Any, ns: Any, settings: LimitSettings) -> list[Subject]:
    """The limits that apply to a request by `key` (KeyInfo) in `ns` (NamespaceInfo)."""
    if not settings.enabled:
        return []
    out = []
    for scope, owner, rpm, tpm in (
        ("key", key, settings.key_rpm, settings.key_tpm),
        ("namespace", ns, settings.namespace_rpm, settings.namespace_tpm),
    ):
        prefix = "key" if scope == "key" else "ns"
        for unit, kind, default in (("rpm", REQUESTS, rpm), ("tpm", TOKENS, tpm)):
            limit = effective(getattr(owner, unit, None), default)
            if limit:
                out.append(Subject(f"{prefix}:{owner.id}:{unit}", limit, kind, scope))
    return out


def window_of(name: str, now: float, window_s: float = 60.0) -> tuple[int, float]:
    """The window a subject is in at `now` and the seconds until it ends (stable per-subject
    phase)."""
    phase = (zlib.crc32(name.encode()) % 10_000) / 10_000 * window_s
    pos = now + phase
    w = math.floor(pos / window_s)
    return w, (w + 1) * window_s - pos


@dataclass(frozen=True)
class Grant:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the window ends
    retry_after_s: float  # 0 when allowed
    window: int = 0


@dataclass
class _Local:
    window: int | None = None
    expires: float = 0.0
    balance: int = 0
    shared_left: int = 0
    last_used: float = 0.0
    denied_until: float = 0.0
    rate: float = 0.0  # units per second, decayed
    rate_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Admission:
    """What `LocalLimiter.acquire` let through: per subject, its grant and window."""

    grants: dict[str, tuple[Subject, Grant]] = field(default_factory=dict)
    settled: bool = False

    def headers(self) -> dict[str, str]:
        """The rate-limit headers of a successful response (limits skipped by fail-open left
        out)."""
        return limit_headers(sg for sg in self.grants.values() if sg[1].window != -1)


def _tightest(items, kind):
    mine = [(s, g) for s, g in items if s.kind == kind]
    return (
        min(mine, key=lambda sg: (sg[1].remaining / sg[1].limit, sg[1].remaining)) if mine else None
    )


def limit_headers(items, denied: tuple[Subject, Grant] | None = None) -> dict[str, str]:
    """`X-RateLimit-Limit/-Remaining/-Reset` (requests) and `...-Tokens` (tokens), of the tightest
    limit of each kind; Reset is seconds until that window ends. A denial adds `Retry-After`."""
    items = list(items)
    out: dict[str, str] = {}
    for kind, suffix in ((REQUESTS, ""), (TOKENS, "-Tokens")):
        sg = denied if denied is not None and denied[0].kind == kind else _tightest(items, kind)
        if sg is not None:
            s, g = sg
            out[f"X-RateLimit-Limit{suffix}"] = str(g.limit)
            out[f"X-RateLimit-Remaining{suffix}"] = str(max(0, min(g.remaining, g.limit)))
            out[f"X-RateLimit-Reset{suffix}"] = str(max(1, math.ceil(g.reset_s)))
    if denied is not None:
        out["Retry-After"] = str(max(1, math.ceil(denied[1].retry_after_s)))
    return out


def denial_headers(exc: RateLimited) -> dict[str, str]:
    """The headers of a 429 raised by LocalLimiter.acquire (also fine for any RateLimited)."""
    d = exc.details or {}
    if "limit" not in d:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    s = Subject(
        d.get("subject", ""), int(d["limit"]), d.get("limit_type", REQUESTS), d.get("scope", "key")
    )
    return limit_headers(
        [],
        (
            s,
            Grant(False, s.limit, 0, float(d.get("reset_s", exc.retry_after_s)), exc.retry_after_s),
        ),
    )


class LocalLimiter:
    """The ingress's fast path over a shared limiter reached through `shared(request) -> response`
    (an async callable: a Serve handle call in production, `SharedLimiter.handle` in tests)."""

    def __init__(
        self,
        shared: SharedCall,
        *,
        lease_fraction: float = 0.1,
        idle_return_s: float = 1.0,
        deny_cache_s: float = 0.2,
        fail_open: bool = True,
        call_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.shared, self.clock = shared, clock
        self.lease_fraction, self.idle_return_s = lease_fraction, idle_return_s
        self.deny_cache_s, self.fail_open = deny_cache_s, fail_open
        self.call_timeout_s = call_timeout_s
        self._state: dict[str, _Local] = {}
        self._task: asyncio.Task | None = None

    @classmethod
    def from_settings(cls, shared: SharedCall, s: LimitSettings, **kw) -> "LocalLimiter":
        return cls(
            shared,
            lease_fraction=s.lease_fraction,
            idle_return_s=s.idle_return_s,
            deny_cache_s=s.deny_cache_s,
            fail_open=s.fail_open,
            call_timeout_s=s.call_timeout_s,
            **kw,
        )

    def _st(self, name: str, now: float) -> _Local:
        st = self._state.get(name)
        if st is None:
            st = self._state[name] = _Local()
        elif st.window is not None and now >= st.expires:
            # the window is over: its units are void
            st.window, st.balance, st.denied_until = None, 0, 0.0
        return st

    def _note_use(self, st: _Local, units: int, now: float) -> None:
        dt = max(now - st.rate_at, 0.0)
        st.rate = st.rate * math.exp(-dt / 2.0) + units / 2.0  # ~2 s moving rate
        st.rate_at, st.last_used = now, now

    def _grant(self, sub: Subject, st: _Local, now: float) -> Grant:
        return Grant(
            True,
            sub.limit,
            max(0, st.balance) + st.shared_left,
            max(st.expires - now, 0.0),
            0.0,
            st.window or 0,
        )

    async def _ensure(self, sub: Subject, need: int) -> Grant | None:
        """A grant once the local balance covers `need` (leasing if it does not); None: denied."""
        st = self._st(sub.name, self.clock())
        if st.balance >= need:
            return self._grant(sub, st, self.clock())
        async with st.lock:
            now = self.clock()
            st = self._st(sub.name, now)
            if st.balance >= need:
                return self._grant(sub, st, now)
            if now < st.denied_until:
                return None
            cap = max(1, int(sub.limit * self.lease_fraction))
            want = min(cap, max(need, math.ceil(st.rate * self.idle_return_s) + need))
            try:
                r = await self._call({"op": "lease", "subject": sub.wire(), "n": want})
            except Exception:
                if not self.fail_open:
                    raise
                log.warning(
                    "shared rate limiter unreachable; admitting %s", sub.name, exc_info=True
                )
                return Grant(True, sub.limit, sub.limit, 0.0, 0.0, -1)
            if st.window != r["window"]:
                st.window, st.balance = r["window"], 0
            # measured from the ask: never later than the shared end
            st.expires = now + r["reset_s"]
            st.balance += r["granted"]
            st.shared_left = r["remaining"]
            if self.clock() >= st.expires:
                # the answer came back after its window ended: its units belong to a window that
                # is over, and spending them now would charge the next one beyond its limit
                st.window, st.balance = None, 0
                return None
            if st.balance >= need:
                return self._grant(sub, st, now)
            st.denied_until = now + min(self.deny_cache_s, r["reset_s"])
            return None

    async def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        """One call to the shared limiter, bounded: a restarting limiter is a TimeoutError here
        (fail_open then decides), never a request that hangs."""
        async with asyncio.timeout(self.call_timeout_s):  # no extra task, unlike wait_for
            return await self.shared(req)

    async def acquire(self, subjects: list[Subject]) -> Admission:
        """Admits a request against every subject or raises RateLimited (nothing taken then).
        Request subjects take one unit; token subjects need a balance > 0 and are charged later
        by `settle`."""
        # idle leases go back even if no one called start() (a test's own clock drives sweep())
        if self._task is None and self.clock is time.monotonic:
            self.start()
        adm = Admission()
        taken: list[tuple[Subject, int]] = []
        for sub in sorted(subjects, key=lambda s: s.name):
            g = await self._ensure(sub, 1)
            if g is None:
                for s, window in taken:
                    st = self._state.get(s.name)
                    if st is not None and st.window == window:
                        st.balance += 1  # refund: the request was not admitted
                st = self._state[sub.name]
                reset = max(st.expires - self.clock(), 0.0)
                what = "requests" if sub.kind == REQUESTS else "tokens"
                raise RateLimited(
                    f"rate limit reached: {sub.limit} {what} per minute for this "
                    f"{'API key' if sub.scope == 'key' else 'namespace'}; "
                    f"retry in {max(1, math.ceil(reset))} s",
                    retry_after_s=max(reset, 0.001),
                    details={
                        "scope": sub.scope,
                        "limit_type": what,
                        "limit": sub.limit,
                        "remaining": 0,
                        "reset_s": round(reset, 3),
                        "subject": sub.name,
                    },
                )
            if sub.kind == REQUESTS and g.window != -1:
                st = self._state[sub.name]
                st.balance -= 1
                self._note_use(st, 1, self.clock())
                g = self._grant(sub, st, self.clock())
                taken.append((sub, g.window))
            adm.grants[sub.name] = (sub, g)
        return adm

    async def settle(self, adm: Admission, tokens: int) -> None:
        """Charges a finished request's tokens (prompt + completion) to its token limits: from the
        local balance, the overdraft to the shared counter. Call once per admitted request."""
        if adm.settled:
            return
        adm.settled = True
        now = self.clock()
        for sub, g in adm.grants.values():
            if sub.kind != TOKENS or tokens <= 0 or g.window == -1:
                continue
            st = self._st(sub.name, now)
            self._note_use(st, tokens, now)
            if st.window != g.window:  # admitted in a window now over: the shared one charges now
                await self._send(
                    {"op": "debit", "name": sub.name, "window": g.window, "amount": tokens}
                )
                continue
            st.balance -= tokens
            if st.balance < 0:
                over, st.balance = -st.balance, 0
                st.shared_left = max(0, st.shared_left - over)
                await self._send(
                    {"op": "debit", "name": sub.name, "window": g.window, "amount": over}
                )

    async def _send(self, req: dict[str, Any]) -> None:
        try:
            await self._call(req)
        except Exception:
            log.warning(
                "shared rate limiter unreachable (%s dropped)", req.get("op"), exc_info=True
            )

    async def sweep(self, force: bool = False) -> int:
        """Gives back leased units idle for `idle_return_s` (all of them with `force`); forgets
        states of windows long over. Returns the units given back."""
        now, ops = self.clock(), []
        for name, st in list(self._state.items()):
            if st.window is not None and now >= st.expires:
                st.window, st.balance = None, 0
            if (
                st.window is not None
                and st.balance > 0
                and (force or now - st.last_used >= self.idle_return_s)
            ):
                ops.append({"op": "give_back", "name": name, "window": st.window, "n": st.balance})
                st.shared_left += st.balance
                st.balance = 0
            elif st.window is None and now - st.last_used > 600 and not st.lock.locked():
                del self._state[name]
        if ops:
            await self._send({"op": "batch", "ops": ops})
        return sum(o["n"] for o in ops)

    def start(self) -> None:
        """Runs `sweep` in the background (needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweeper())

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.idle_return_s / 2)
            try:
                await self.sweep()
            except Exception:
                log.exception("rate limiter sweep failed")

    async def close(self) -> None:
        """Stops the sweeper and gives every unspent unit back (replica shutdown)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.sweep(force=True)


class KeyConcurrency:
    """Requests in flight per key on this ingress replica, capped: one key cannot hold every
    slot of the replica (its queue, its connections) while others wait. Not thread-safe: one
    event loop."""

    def __init__(self, cap: int | None):
        self.cap = cap
        self.inflight: dict[str, int] = {}

    def enter(self, key_id: str) -> Callable[[], None]:
        """A release function to call once when the request ends; RateLimited past the cap."""
        if self.cap is None:
            return lambda: None
        n = self.inflight.get(key_id, 0)
        if n >= self.cap:
            raise RateLimited(
                f"this key already has {self.cap} requests in flight here; wait for one to finish",
                retry_after_s=1.0,
                details={"max_concurrent": self.cap},
            )
        self.inflight[key_id] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self.inflight.get(key_id, 1) - 1
            if left > 0:
                self.inflight[key_id] = left
            else:
                self.inflight.pop(key_id, None)

        return release
