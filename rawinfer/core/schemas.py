"""Validating a model's output against the caller's JSON Schema, safely: no reference is ever
fetched (an empty `referencing.Registry`: a `$ref` outside the schema is an error, not a request
to some URL), and `pattern` is matched by the `regex` module with a time bound, so a
catastrophic pattern costs at most `PATTERN_TIMEOUT_S` per string (docs/security.md)."""

from __future__ import annotations

from typing import Any

PATTERN_TIMEOUT_S = 0.1


def _pattern(validator, pattern, instance, schema):
    import regex
    from jsonschema import ValidationError

    if not validator.is_type(instance, "string"):
        return
    try:
        found = regex.search(pattern, instance, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        yield ValidationError(f"pattern {pattern[:80]!r} took too long to match")
        return
    except regex.error:
        yield ValidationError(f"pattern {pattern[:80]!r} is not a valid regular expression")
        return
    if found is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


def schema_error(instance: Any, schema: dict[str, Any]) -> str | None:
    """The first way `instance` breaks `schema` (a short message), or None when it conforms."""
    import jsonschema
    import referencing
    import referencing.exceptions

    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, {"pattern": _pattern})
    try:
        error = next(iter(cls(schema, registry=referencing.Registry()).iter_errors(instance)), None)
    except referencing.exceptions.Unresolvable as e:
        return f"the schema refers to {str(e)[:120]}, which is not inside it"
    except jsonschema.SchemaError as e:
        return f"the schema is not valid: {e.message[:160]}"
    return None if error is None else error.message[:200]
