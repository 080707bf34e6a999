"""What every cloud-provider adapter shares: settings, the adapter base class, the deadline-bound
retry loop and the mapping of provider failures onto the service's errors (never a 500; see
docs/notes/engines.md#providers). Plain Python: no Ray."""

from __future__ import annotations

import abc
import asyncio
import email.utils
import importlib
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, ClassVar, Iterable, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from rawinfer.contract import Task
from rawinfer.contract.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ProviderError,
    RawInferError,
    Unavailable,
)
from rawinfer.core.catalog import Catalog
from rawinfer.core.deadline import Deadline

log = logging.getLogger("rawinfer.providers")
T = TypeVar("T")

_MIN_ATTEMPT_S = 0.05  # a retry is only started with at least this much of the deadline left


class ProviderSettings(BaseModel):
    """One provider's connection settings. `api_key_file` (a mounted secret) is read once, here,
    when `api_key` is not given; an empty file or key means "no credentials"."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    base_url: str | None = Field(
        None, description="the provider's API root; None = the SDK's default"
    )
    timeout_s: float = Field(60.0, gt=0, description="cap on one provider call")
    max_retries: int = Field(3, ge=0, description="retries of a 429/5xx after the first attempt")
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(8.0, ge=0)

    @model_validator(mode="after")
    def _read_key_file(self) -> "ProviderSettings":
        if self.api_key is None and self.api_key_file is not None:
            try:
                text = self.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise ValueError(
                    f"cannot read api_key_file {self.api_key_file}: {e.strerror}"
                ) from None
            self.api_key = SecretStr(text) if text else None
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            self.api_key = None
        return self

    def key(self) -> str | None:
        return self.api_key.get_secret_value().strip() if self.api_key is not None else None


# --------------------------------------------------------------------------- failures


@dataclass
class Failure:
    """A provider call's failure, read off an SDK exception by the adapter's `classify`."""

    kind: str  # "status" | "timeout" | "connection"
    status: int | None = None
    message: str | None = None
    error_type: str | None = None
    retry_after_s: float | None = None
    credentials_refused: bool = False  # a 401, or a provider's own way of saying "bad key"

    @property
    def retryable(self) -> bool:
        return self.kind == "connection" or self.status == 429 or (self.status or 0) >= 500


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


_KEYLIKE = re.compile(
    r"(sk-[A-Za-z0-9_\-*.]{4,}|AIza[0-9A-Za-z_\-]{10,}|ya29\.[0-9A-Za-z_\-.]+|Bearer\s+\S+)"
)


def redact(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """`text` without the given secrets or anything shaped like an API key or bearer token."""
    if text is None:
        return None
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)[:1000]


def body_message(body: Any) -> tuple[str | None, str | None]:
    """(message, type) from a provider's JSON error body: {"error": {...}} or the inner object."""
    if isinstance(body, Mapping):
        inner = body.get("error") if isinstance(body.get("error"), Mapping) else body
        msg, typ = (
            inner.get("message"),
            inner.get("type") or inner.get("status") or inner.get("code"),
        )
        return (str(msg) if msg else None), (str(typ) if typ else None)
    if isinstance(body, (str, bytes)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return (text.strip()[:500] or None), None
    return None, None


# --------------------------------------------------------------------------- adapter


class ProviderAdapter(abc.ABC):
    """One cloud provider. `run` takes the plain-data request the ingress builds:

        {"task": "chat"|"vision"|"text_embedding"|"multimodal_embedding"|"transcription",
         "model": str,
         "inputs": dict,       # contract inputs; media already fetched: *_url/*_base64 replaced
                               # by "media": bytes, "media_kind": "image"|"video"|"audio",
                               # "mime": str|None, "filename": str|None
         "parameters": dict}

    and `deadline_s`, the seconds left for the request (a relative budget, measured from the
    call). It returns {"data": <contract data>, "model": <model the provider reports>,
    "tokens_used": {"prompt", "completion", "total"} | None}.
    Subclasses define `name`, `classify` and one `_<task>` coroutine per task its wire format
    serves (`tasks` lists them). Which model does which task is the catalog's (`models`).
    """

    name: ClassVar[str]
    tasks: ClassVar[frozenset[str]] = frozenset()  # set from the `_<task>` coroutines
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    # imported at construction: seconds, never inside a deadline
    sdk_modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.tasks = frozenset(t.value for t in Task if callable(getattr(cls, f"_{t.value}", None)))

    def __init__(
        self,
        settings: ProviderSettings | Mapping[str, Any] | None = None,
        models: Mapping[str, Iterable[str]] | None = None,
    ):
        """`models`: the catalog's table, model -> tasks (`catalog_models`); None: no per-model
        check here (the ingress resolved the name through the catalog already)."""
        self.models = (
            None
            if models is None
            else {m: frozenset(ts) & self.tasks for m, ts in dict(models).items()}
        )
        if settings is None:
            settings = {}
        if isinstance(settings, BaseModel) and not isinstance(settings, self.settings_model):
            settings = settings.model_dump(exclude_unset=True)
        if not isinstance(settings, self.settings_model):
            settings = self.settings_model.model_validate(dict(settings))
        self.settings = settings
        for module in self.sdk_modules:
            importlib.import_module(module)
        self._clients: dict[str, tuple[Any, Any]] = {}  # slot -> (event loop, client)

    def _loop_client(self, factory: Callable[[], Any], slot: str = "sdk") -> Any:
        """The client in `slot` for the running event loop (HTTP pools are bound to one loop)."""
        loop = asyncio.get_running_loop()
        held = self._clients.get(slot)
        if held is None or held[0] is not loop:
            held = self._clients[slot] = (loop, factory())
        return held[1]

    async def aclose(self) -> None:
        """Close the HTTP clients made in the running loop."""
        loop = asyncio.get_running_loop()
        for slot, (owner, client) in list(self._clients.items()):
            if owner is loop:
                del self._clients[slot]
                closer = getattr(client, "aclose", None) or getattr(client, "close", None)
                result = closer() if closer else None
                if asyncio.iscoroutine(result):
                    await result

    @property
    def available(self) -> bool:
        """True when this server holds credentials for the provider."""
        return self.settings.key() is not None

    def tasks_for(self, model: str) -> set[str]:
        """The tasks `model` can do here: the catalog's, or without a `models` table every task
        this provider's wire format serves (empty: a model the catalog does not know)."""
        return set(self.tasks if self.models is None else self.models.get(model, ()))

    @abc.abstractmethod
    def classify(self, exc: BaseException) -> Failure | None:
        """The provider failure an SDK exception stands for; None: not a provider failure."""

    def available_for(self, model: str) -> bool:
        """True when this server can call the provider for `model`."""
        return self.available

    def secrets(self) -> list[str]:
        return [k for k in (self.settings.key(),) if k]

    async def run(self, request: Mapping[str, Any], deadline_s: float) -> dict[str, Any]:
        deadline = Deadline(deadline_s)
        task, model = request.get("task"), request.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("a model is required")
        tasks = self.tasks_for(model)
        if not tasks:
            raise InvalidRequest(
                f"unknown {self.name} model {model!r}", {"provider": self.name, "model": model}
            )
        if task not in tasks:
            raise InvalidRequest(
                f"{self.name}/{model} cannot do {task}; it can do: {', '.join(sorted(tasks))}",
                {"requested_task": task, "supported_tasks": sorted(tasks)},
            )
        if not self.available_for(model):
            raise Unavailable(
                f"the {self.name} provider is not configured on this server (no credentials)",
                {"provider": self.name},
            )
        handler = getattr(self, f"_{task}")
        try:
            return await handler(
                model, dict(request.get("inputs") or {}), request.get("parameters") or {}, deadline
            )
        except RawInferError:
            raise
        except Exception as e:  # an answer we could not read: the provider's side, never a 500
            log.warning("%s: unreadable answer (%s)", self.name, type(e).__name__)
            raise ProviderError(
                f"{self.name} returned an answer this server could not read",
                {"provider": self.name, "error_type": type(e).__name__},
            ) from None

    # ---- the retry loop

    async def call(
        self, attempt: Callable[[float], Awaitable[T]], deadline: Deadline, what: str
    ) -> T:
        """`attempt(timeout_s)` (one SDK call) with our retries, bounded by `deadline`."""
        s = self.settings
        retries = 0
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"the request deadline passed before {self.name} was asked for {what}",
                    {"provider": self.name, "deadline_s": deadline.budget_s},
                )
            per_try = min(s.timeout_s, remaining)
            try:
                async with asyncio.timeout(per_try):
                    return await attempt(per_try)
            except RawInferError:
                raise
            except Exception as e:  # noqa: BLE001 - every SDK failure is mapped below
                failure = Failure("timeout") if isinstance(e, TimeoutError) else self.classify(e)
                if failure is None:
                    raise
            if failure.kind == "timeout":
                raise DeadlineExceeded(
                    f"{self.name} did not answer {what} within {per_try:.3g} s",
                    {"provider": self.name, "timeout_s": round(per_try, 3)},
                )
            if not failure.retryable:
                raise self.refused(failure)
            if retries >= s.max_retries:
                raise self.gave_up(failure, retries)
            if failure.retry_after_s is not None:
                wait = failure.retry_after_s
            else:
                wait = random.uniform(0, min(s.backoff_max_s, s.backoff_base_s * (2**retries)))
            if wait + _MIN_ATTEMPT_S >= deadline.remaining():
                raise DeadlineExceeded(
                    f"{self.name} kept failing ({self._what(failure)}) and the next retry, in "
                    f"{wait:.3g} s, "
                    f"would pass the request deadline",
                    {**self._details(failure), "retries": retries},
                )
            retries += 1
            log.warning(
                "%s %s: %s; retry %d/%d in %.3f s",
                self.name,
                what,
                self._what(failure),
                retries,
                s.max_retries,
                wait,
            )
            await asyncio.sleep(wait)

    def _what(self, f: Failure) -> str:
        return f"HTTP {f.status}" if f.status is not None else "connection failed"

    @staticmethod
    def _bad_key(f: Failure) -> bool:
        return f.status == 401 or f.credentials_refused

    def _details(self, f: Failure) -> dict[str, Any]:
        d: dict[str, Any] = {"provider": self.name}
        if f.status is not None:
            d["provider_status"] = f.status
        if not self._bad_key(f):
            msg = redact(f.message, self.secrets())
            if msg:
                d["provider_message"] = msg
        if f.error_type:
            d["provider_error_type"] = redact(f.error_type, self.secrets())
        return d

    def refused(self, f: Failure) -> ProviderError:
        """A provider 4xx (not 429) as the 502 the client gets."""
        details = self._details(f)
        if self._bad_key(f):
            return ProviderError(
                f"{self.name} refused this server's {self.name} credentials (HTTP {f.status}); "
                f"this is a server "
                f"configuration problem: the operator must set a valid {self.name} API key",
                details,
            )
        text = details.get("provider_message") or "no message"
        return ProviderError(f"{self.name} refused the request (HTTP {f.status}): {text}", details)

    def gave_up(self, f: Failure, retries: int) -> ProviderError:
        details = {**self._details(f), "retries": retries}
        if f.retry_after_s is not None:
            details["retry_after_s"] = round(f.retry_after_s, 3)
        why = "rate-limited this server" if f.status == 429 else f"kept failing ({self._what(f)})"
        return ProviderError(
            f"{self.name} {why}; gave up after {retries} retries, try again later", details
        )


def catalog_models(catalog: Catalog, backend: str) -> dict[str, list[str]]:
    """model -> tasks of every catalog target routed to the provider `backend`: the one place
    a cloud model's tasks are declared (a target's `tasks`, else its backend's)."""
    spec = catalog.backends[backend]
    return {
        t.model: [x.value for x in (t.tasks if t.tasks is not None else spec.tasks)]
        for t in catalog.targets
        if t.backend == backend and t.model is not None
    }
