"""Validating a model's output against the caller's JSON Schema, safely: no reference is ever
fetched (an empty `referencing.Registry`: a `$ref` outside the schema is an error, not a request
to some URL), and every regular expression of the schema (`pattern`, and the `patternProperties`
keys, also where `additionalProperties` consults them) is matched by the `regex` module with a
time bound, so a catastrophic pattern costs at most `PATTERN_TIMEOUT_S` per string
(docs/security.md)."""

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
    except TimeoutError:  # raised, not yielded: the whole validation stops at the first one
        raise _PatternFailed(f"pattern {pattern[:80]!r} took too long to match") from None
    except regex.error:
        yield ValidationError(f"pattern {pattern[:80]!r} is not a valid regular expression")
        return
    if found is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


class _PatternFailed(Exception):
    """A pattern that took too long (or a `patternProperties` key that does not compile): the
    schema's fault and the end of the validation: the bound is per validation, not per branch."""


def _matches(pattern: str, text: str) -> bool:
    import regex

    try:
        return regex.search(pattern, text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        raise _PatternFailed(f"pattern {pattern[:80]!r} took too long to match") from None
    except regex.error:
        raise _PatternFailed(
            f"pattern {pattern[:80]!r} is not a valid regular expression"
        ) from None


def _pattern_properties(validator, patterns, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for k, v in instance.items():
            if _matches(pattern, k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _additional_properties(validator, additional, instance, schema):
    from jsonschema import ValidationError

    if not validator.is_type(instance, "object"):
        return
    known, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = [k for k in instance if k not in known and not any(_matches(p, k) for p in patterns)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        names = ", ".join(repr(k)[:40] for k in sorted(extras)[:5])
        yield ValidationError(f"additional properties are not allowed ({names})")


KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


def schema_error(instance: Any, schema: dict[str, Any]) -> str | None:
    """The first way `instance` breaks `schema` (a short message), or None when it conforms."""
    import jsonschema
    import referencing
    import referencing.exceptions

    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, KEYWORDS)
    try:
        error = next(iter(cls(schema, registry=referencing.Registry()).iter_errors(instance)), None)
    except _PatternFailed as e:
        return str(e)
    except referencing.exceptions.Unresolvable as e:
        return f"the schema refers to {str(e)[:120]}, which is not inside it"
    except jsonschema.SchemaError as e:
        return f"the schema is not valid: {e.message[:160]}"
    return None if error is None else error.message[:200]
