"""`rawinfer batch` beside `make run`: with no key variable set it takes the development key,
and says so; anywhere but a local service it does not."""

from __future__ import annotations

import argparse

import pytest

from rawinfer.batch import BatchError, _development_key, run


def args(url: str, namespace=None) -> argparse.Namespace:
    return argparse.Namespace(url=url, api_key_env="RAWINFER_TEST_NO_SUCH_KEY", namespace=namespace)


@pytest.fixture()
def dev_key(tmp_path, monkeypatch):
    path = tmp_path / "dev-key"
    path.write_text("sk_" + "d" * 43 + "\n")
    monkeypatch.setenv("RAWINFER_DEV_KEY_FILE", str(path))
    monkeypatch.delenv("RAWINFER_TEST_NO_SUCH_KEY", raising=False)
    return path


def test_the_development_key_is_used_against_a_local_service(dev_key, capsys):
    a = args("http://127.0.0.1:8000")
    assert _development_key(a) == "sk_" + "d" * 43
    assert a.namespace == "dev"
    err = capsys.readouterr().err
    assert "RAWINFER_TEST_NO_SUCH_KEY is not set" in err and str(dev_key) in err
    assert "sk_" not in err  # the key itself is never printed


def test_a_remote_service_needs_the_key_variable(dev_key):
    assert _development_key(args("https://rawinfer.example.com")) == ""
    a = args("https://rawinfer.example.com")
    a.concurrency, a.input, a.output = 1, "in.jsonl", "out.jsonl"
    with pytest.raises(BatchError, match="RAWINFER_TEST_NO_SUCH_KEY"):
        run(a)


def test_no_development_key_no_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("RAWINFER_DEV_KEY_FILE", str(tmp_path / "missing"))
    assert _development_key(args("http://localhost:8000")) == ""
