"""Output validation against a caller's schema: no reference is fetched, a catastrophic pattern
is bounded in time, and ordinary schemas validate as jsonschema does."""

from __future__ import annotations

import http.server
import threading
import time

from rawinfer.core.schemas import schema_error


def test_ordinary_schemas_validate():
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "pattern": "^[A-Z][a-z]+$"}},
        "required": ["city"],
        "$defs": {"n": {"type": "integer"}},
    }
    assert schema_error({"city": "Paris"}, schema) is None
    assert "required" in schema_error({}, schema)
    assert "does not match" in schema_error({"city": "paris"}, schema)
    local = {"$ref": "#/$defs/n", "$defs": {"n": {"type": "integer"}}}
    assert schema_error(3, local) is None and "integer" in schema_error("x", local)


def test_a_remote_reference_is_never_fetched():
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "string"}')

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/schema.json"
        message = schema_error("x", {"$ref": url})
        assert message is not None and "not inside it" in message
        assert hits == []
    finally:
        server.shutdown()


def test_a_catastrophic_pattern_is_bounded():
    t0 = time.perf_counter()
    message = schema_error("a" * 60 + "!", {"type": "string", "pattern": "^(a|aa)+$"})
    assert message is not None and "too long" in message
    assert time.perf_counter() - t0 < 5  # Python's re would take minutes here
    assert "not a valid" in schema_error("x", {"type": "string", "pattern": "("})


def test_pattern_properties_keys_are_bounded_too():
    key = "a" * 60 + "!"
    for schema in (
        {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}},
        # additionalProperties consults the patterns as well
        {"type": "object", "patternProperties": {"^(a|aa)+$": {}}, "additionalProperties": False},
    ):
        t0 = time.perf_counter()
        message = schema_error({key: 1}, schema)
        assert message is not None and "too long" in message
        assert time.perf_counter() - t0 < 5
    bad = {"type": "object", "patternProperties": {"(": {}}}
    assert "not a valid" in schema_error({"k": 1}, bad)


def test_pattern_and_additional_properties_still_validate():
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert schema_error({"id": "a", "x-n": 3}, schema) is None
    assert "integer" in schema_error({"x-n": "three"}, schema)
    assert "additional properties" in schema_error({"other": 1}, schema)
    typed = {"type": "object", "additionalProperties": {"type": "string"}}
    assert schema_error({"a": "b"}, typed) is None and "string" in schema_error({"a": 1}, typed)


def test_the_time_bound_is_per_validation_not_per_branch():
    evil = {"pattern": "^(a|aa)+$"}
    schema = {"type": "array", "items": {"anyOf": [evil] * 8}}
    t0 = time.perf_counter()
    message = schema_error(["a" * 60 + "!"] * 20, schema)  # 160 matches, each could take 0.1 s
    assert message is not None and "too long" in message
    assert time.perf_counter() - t0 < 2
