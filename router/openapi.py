"""The OpenAPI document served at /openapi.json, completed with what the routes read by hand
(bodies, headers, every status's error body); fuzzing holds the service to it
(docs/notes/router.md#the-openapi-document)."""

from __future__ import annotations

import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from rawinfer.contract import ErrorBody, InferenceRequest, InferenceResponse
from rawinfer.contract.errors import ERROR_TYPES
from router.openai_chat import ChatCompletionsBody
from router.openai_compat import EmbeddingsBody

REF = "#/components/schemas/{model}"
OPENAI_ROUTES = {
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/models",
}
PUBLIC_ROUTES = {"/healthz", "/readyz"}
ERROR_STATUSES = tuple(str(s) for s in sorted(ERROR_TYPES))

OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {},
            },
        }
    },
}
OBJECT = {"type": "object"}
SSE = {"text/event-stream": {"schema": {"type": "string"}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _header(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


HEADERS = [
    _header(
        "X-Namespace",
        "namespace id (`ns_...`) or name; required unless the key is limited to one namespace",
    ),
    _header(
        "X-Request-Id", "optional; echoed back when it is a safe token, else a new id is generated"
    ),
]


def _audio(transcribe: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """An OpenAI audio route's multipart body and answers (translations take no language)."""
    props: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
        "response_format": {
            "type": "string",
            "enum": ["json", "text", "srt", "vtt", "verbose_json"],
        },
    }
    if transcribe:
        props["language"] = {"type": "string"}
        props["timestamp_granularities[]"] = {
            "type": "array",
            "items": {"type": "string", "enum": ["word", "segment"]},
        }
    schema = {"type": "object", "required": ["file", "model"], "properties": props}
    return {"multipart/form-data": {"schema": schema}}, {
        **_json(OBJECT),
        "text/plain": {"schema": {"type": "string"}},
        "text/vtt": {"schema": {"type": "string"}},
    }


# path -> method -> (request body content, 200 response content)
ROUTES: dict[str, dict[str, tuple[dict[str, Any] | None, dict[str, Any]]]] = {
    "/healthz": {
        "get": (
            None,
            _json(
                {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": {"type": "string"}},
                }
            ),
        )
    },
    "/readyz": {
        "get": (
            None,
            _json(
                {
                    "type": "object",
                    "required": ["ready", "deployments", "not_ready"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "deployments": OBJECT,
                        "not_ready": {"type": "array", "items": {"type": "string"}},
                    },
                }
            ),
        )
    },
    "/v1/inference": {
        "post": (_json(_ref("InferenceRequest")), {**_json(_ref("InferenceResponse")), **SSE})
    },
    "/v1/inference/models": {"get": (None, _json(OBJECT))},
    "/v1/usage": {"get": (None, _json(OBJECT))},
    "/v1/embeddings": {"post": (_json(_ref("EmbeddingsBody")), _json(OBJECT))},
    "/v1/chat/completions": {
        "post": (_json(_ref("ChatCompletionsBody")), {**_json(OBJECT), **SSE})
    },
    "/v1/audio/transcriptions": {"post": _audio(transcribe=True)},
    "/v1/audio/translations": {"post": _audio(transcribe=False)},
    "/v1/models": {
        "get": (
            None,
            _json(
                {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {
                        "object": {"type": "string"},
                        "data": {"type": "array", "items": OBJECT},
                    },
                }
            ),
        )
    },
}
QUERY = {
    "/v1/usage": [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
        for n in ("from", "to", "group_by")
    ]
}


def _components() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in (InferenceRequest, EmbeddingsBody, ChatCompletionsBody)]
        + [(m, "serialization") for m in (InferenceResponse, ErrorBody)],
        ref_template=REF,
    )
    schemas = defs.get("$defs", {})
    schemas["OpenAIError"] = OPENAI_ERROR
    return schemas


def describe_operation(path: str, method: str, op: dict[str, Any]) -> None:
    """Fill in one operation in place."""
    known = ROUTES.get(path, {}).get(method)
    if known is not None:
        body, ok = known
        if body is not None:
            op["requestBody"] = {"required": True, "content": body}
        op["responses"] = {"200": {"description": "success", "content": ok}}
    else:
        op.setdefault("responses", {}).pop("422", None)
    if path not in PUBLIC_ROUTES:
        names = {p.get("name", "").lower() for p in op.get("parameters", [])}
        op["parameters"] = (
            op.get("parameters", [])
            + [h for h in HEADERS if h["name"].lower() not in names]
            + QUERY.get(path, [])
        )
        op["security"] = [{"bearer": []}]
    error = _json(_ref("OpenAIError") if path in OPENAI_ROUTES else _ref("ErrorBody"))
    for status in ERROR_STATUSES:
        op["responses"][status] = {"description": "error", "content": error}
    if path == "/readyz" and known is not None:  # not ready: the same body, naming what is down
        op["responses"]["503"] = {"description": "not ready", "content": known[1]}


def describe(api: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once, then cached like FastAPI's own)."""
    if api.openapi_schema is not None:
        return api.openapi_schema
    with (
        warnings.catch_warnings()
    ):  # FastAPI's duplicate operation ids of multi-method routes, replaced below
        warnings.simplefilter("ignore", UserWarning)
        doc = get_openapi(
            title=api.title, version=api.version, description=api.description, routes=api.routes
        )
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            op["operationId"] = (
                f"{method}_{path}"  # unique, unlike FastAPI's for multi-method routes
            )
            describe_operation(path, method, op)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_components())
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    api.openapi_schema = doc
    return doc
