"""Provider adapters against the wire-format fakes: errors, retries, deadlines, redaction,
credentials."""

from __future__ import annotations

import logging
import time

import pytest
from fake_providers import (
    GOOGLE_KEY,
    KEYS,
    OPENAI_KEY,
    chat,
    fails,
    google_error,
    make,
    run,
)
from test_providers import _clean, fakes  # noqa: F401  (the fakes fixture and its reset)

from models.providers import ADAPTERS
from rawinfer.contract.errors import DeadlineExceeded, InvalidRequest, ProviderError, Unavailable

ERROR_400 = {
    "openai": (
        lambda f: f.openai,
        {
            "error": {
                "message": "Invalid value for 'temperature'.",
                "type": "invalid_request_error",
                "code": "invalid_value",
            }
        },
        "gpt-4o-mini",
    ),
    "anthropic": (
        lambda f: f.anthropic,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Invalid value for 'temperature'.",
            },
        },
        "claude-sonnet-4-5",
    ),
    "google": (
        lambda f: f.gemini,
        google_error(400, "Invalid value for 'temperature'.", "INVALID_ARGUMENT"),
        "gemini-2.5-flash",
    ),
}


@pytest.mark.parametrize("provider", sorted(ERROR_400))
def test_provider_400_is_502_with_its_message(fakes, provider):
    fake, body, model = ERROR_400[provider]
    fake(fakes).reply(400, body)
    err, _ = fails(make(provider, fakes), chat(model))
    assert isinstance(err, ProviderError)
    assert err.details["provider"] == provider and err.details["provider_status"] == 400
    assert err.details["provider_message"] == "Invalid value for 'temperature'."
    assert "Invalid value" in err.message and len(fake(fakes).requests) == 1  # not retried


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_refused_credentials_never_echo_a_key(fakes, provider, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = {
        "openai": "sk-wrong-openai-KEY-0123456789",
        "anthropic": "sk-ant-wrong-KEY-0123456789",
        "google": "AIzaWRONG-google-KEY-0123456789",
    }[provider]
    err, _ = fails(make(provider, fakes, api_key=wrong), chat(ERROR_400[provider][2]))
    assert (
        isinstance(err, ProviderError)
        and "credentials" in err.message
        and "operator" in err.message
    )
    assert (
        "provider_message" not in err.details
    )  # OpenAI's fake echoes the key it got: it must not pass
    assert (
        err.__cause__ is None and err.__context__ is None
    )  # no SDK exception (holding the body) chained
    for secret in (wrong, *KEYS):
        assert (
            secret not in repr(err.details)
            and secret not in err.message
            and secret not in caplog.text
        )
        assert all(secret not in r.getMessage() for r in caplog.records)


def test_keys_in_provider_messages_are_redacted(fakes, caplog):
    caplog.set_level(logging.DEBUG)
    fakes.openai.reply(
        403,
        {
            "error": {
                "message": f"key {OPENAI_KEY} may not use gpt-5; also sk-proj-abcdef123456",
                "type": "permission_error",
                "code": None,
            }
        },
    )
    err, _ = fails(make("openai", fakes), chat())
    assert isinstance(err, ProviderError) and err.details["provider_status"] == 403
    assert (
        "may not use gpt-5" in err.details["provider_message"]
        and "sk-" not in err.details["provider_message"]
    )
    fakes.openai.reply(
        429,
        {"error": {"message": "slow down", "type": "rate_limit"}},
        {"retry-after": "0"},
        times=2,
    )
    run(make("openai", fakes), chat())
    assert (
        "retry 1/3" in caplog.text
        and OPENAI_KEY not in caplog.text
        and "sk-proj" not in caplog.text
    )


def test_429_retried_honouring_retry_after(fakes):
    fakes.openai.reply(
        429,
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        },
        {"retry-after": "0.6"},
    )
    t0 = time.monotonic()
    out = run(make("openai", fakes, backoff_max_s=0.01), chat())
    assert time.monotonic() - t0 >= 0.6 and len(fakes.openai.requests) == 2
    assert out["data"]["responses"][0]["text"] == "echo: What is AI?"
    # Anthropic's 529 overloaded and a retry-after-ms header; Gemini's RetryInfo detail
    fakes.anthropic.reply(
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"retry-after-ms": "300"},
    )
    t0 = time.monotonic()
    run(make("anthropic", fakes), chat("claude-sonnet-4-5"))
    assert time.monotonic() - t0 >= 0.3 and len(fakes.anthropic.requests) == 2
    fakes.gemini.reply(
        429,
        google_error(
            429,
            "Resource exhausted",
            "RESOURCE_EXHAUSTED",
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.4s"}],
        ),
    )
    t0 = time.monotonic()
    run(make("google", fakes), chat("gemini-2.5-flash"))
    assert time.monotonic() - t0 >= 0.4 and len(fakes.gemini.requests) == 2


def test_429_exhausted_and_persistent_503_are_502(fakes):
    fakes.openai.reply(
        429,
        {"error": {"message": "Rate limit reached", "type": "requests"}},
        {"retry-after": "0.01"},
        times=9,
    )
    err, _ = fails(make("openai", fakes, max_retries=2), chat())
    assert isinstance(err, ProviderError) and "rate-limited" in err.message
    assert (
        err.details["provider_status"] == 429
        and err.details["retries"] == 2
        and len(fakes.openai.requests) == 3
    )
    fakes.openai.reset()
    fakes.vertex.reply(
        503, google_error(503, "The service is currently unavailable.", "UNAVAILABLE"), times=9
    )
    err, _ = fails(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, ProviderError) and err.details["provider_status"] == 503
    assert (
        err.details["provider_message"] == "The service is currently unavailable."
        and len(fakes.vertex.requests) == 4
    )


def test_5xx_then_success_and_unreadable_bodies(fakes):
    fakes.openai.reply(502, b"<html>bad gateway</html>", times=2)
    out = run(make("openai", fakes), chat())
    assert (
        len(fakes.openai.requests) == 3
        and out["data"]["responses"][0]["text"] == "echo: What is AI?"
    )
    fakes.anthropic.reply(200, {"unexpected": True})  # a 200 we cannot read: 502, never a 500
    err, _ = fails(make("anthropic", fakes), chat("claude-sonnet-4-5"))
    assert isinstance(err, ProviderError)
    fakes.vertex.reply(200, {"predictions": []})
    err, _ = fails(
        make("google", fakes),
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, ProviderError)


def test_connection_refused_is_retried_then_502(fakes):
    err, _ = fails(make("openai", fakes, base_url="http://127.0.0.1:9/v1", max_retries=1), chat())
    assert (
        isinstance(err, ProviderError)
        and "connection failed" in err.message
        and "127.0.0.1" not in err.message
    )


def test_retries_stop_at_the_deadline(fakes):
    fakes.openai.reply(
        503, {"error": {"message": "overloaded", "type": "server_error"}}, times=1000
    )
    err, took = fails(
        make("openai", fakes, max_retries=100, backoff_base_s=0.1, backoff_max_s=0.3),
        chat(),
        deadline=1.0,
    )
    assert (
        isinstance(err, DeadlineExceeded) and took < 1.0 + 0.5 and len(fakes.openai.requests) >= 2
    )
    assert err.details["provider_status"] == 503
    fakes.openai.reset()
    fakes.openai.reply(
        429, {"error": {"message": "later", "type": "requests"}}, {"retry-after": "30"}
    )
    err, took = fails(
        make("openai", fakes), chat(), deadline=2.0
    )  # a wait past the deadline is not started
    assert isinstance(err, DeadlineExceeded) and took < 1.5 and len(fakes.openai.requests) == 1


HANG = {
    "openai": (lambda f: f.openai, chat()),
    "anthropic": (lambda f: f.anthropic, chat("claude-sonnet-4-5")),
    "google": (lambda f: f.gemini, chat("gemini-2.5-flash")),
    "vertex": (
        lambda f: f.vertex,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    ),
}


@pytest.mark.parametrize("which", sorted(HANG))
def test_hang_is_504_at_the_deadline(fakes, which):
    fake, req = HANG[which]
    fake(fakes).hang(10)
    err, took = fails(make("google" if which == "vertex" else which, fakes), req, deadline=0.8)
    assert (
        isinstance(err, DeadlineExceeded) and 0.75 < took < 0.8 + 0.6
    )  # margin: a loaded 2-CPU box
    assert len(fake(fakes).requests) == 1


def test_per_call_timeout_is_504_without_retry(fakes):
    fakes.openai.hang(10)
    err, took = fails(make("openai", fakes, timeout_s=0.5), chat(), deadline=5)
    assert isinstance(err, DeadlineExceeded) and took < 1.5 and len(fakes.openai.requests) == 1


# ------------------------------------------------------------------------------ configuration


def test_credentials_and_availability(fakes, tmp_path):
    for name in ADAPTERS:
        bare = ADAPTERS[name]({"base_url": "http://127.0.0.1:9"})
        assert bare.available is False
    err, _ = fails(ADAPTERS["openai"]({"base_url": fakes.openai.url + "/v1"}), chat())
    assert isinstance(err, Unavailable) and not fakes.openai.requests
    secret = tmp_path / "openai-key"
    secret.write_text(OPENAI_KEY + "\n")
    from_file = make("openai", fakes, api_key=None, api_key_file=str(secret))
    assert from_file.available and OPENAI_KEY not in repr(from_file.settings)
    run(from_file, chat())
    assert fakes.openai.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    (tmp_path / "empty").write_text("\n")
    assert not ADAPTERS["anthropic"]({"api_key_file": str(tmp_path / "empty")}).available
    with pytest.raises(ValueError, match="api_key_file"):
        ADAPTERS["anthropic"]({"api_key_file": str(tmp_path / "missing")})
    gemini_only = ADAPTERS["google"]({"api_key": GOOGLE_KEY})
    assert gemini_only.available and not gemini_only.available_for("multimodalembedding")
    err, _ = fails(
        gemini_only,
        {
            "task": "multimodal_embedding",
            "model": "multimodalembedding",
            "inputs": {"text": "x"},
            "parameters": {},
        },
    )
    assert isinstance(err, Unavailable)


def test_bad_requests_are_400(fakes):
    o = make("openai", fakes)
    for req in (
        chat("zzz-unknown-model"),
        {**chat(), "task": "transcription"},
        chat(temperature=5),
        chat(foo=1),
        chat(prompts=[]),
        {
            "task": "vision",
            "model": "gpt-4o",
            "parameters": {},
            "inputs": {"prompts": ["x"], "media": b"not an image", "media_kind": "image"},
        },
    ):
        err, _ = fails(o, req)
        assert isinstance(err, InvalidRequest), req
    assert not fakes.openai.requests
