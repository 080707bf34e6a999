"""The chat and vision tasks: inputs (prompts or messages, an image for vision), parameters,
the payload that crosses the handle, and the engine Protocol.

`ChatParams` defaults follow OpenAI's API (temperature 1.0, top_p 1.0); send `temperature: 0`
for greedy, deterministic text."""

from __future__ import annotations

from typing import Any, AsyncIterator, Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from rawinfer.contract.base import MAX_MESSAGES, MAX_PROMPTS, Strict, check_text, exactly_one
from rawinfer.contract.errors import InvalidRequest

ROLES = ("system", "user", "assistant")


REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


# jsonschema matches patternProperties with Python's `re` when it looks for unevaluated keys
UNBOUNDED_PAIR = frozenset({"unevaluatedProperties", "patternProperties"})


def refuse_remote_refs(schema: Any, where: str = "parameters.schema") -> None:
    """A JSON Schema may only refer inside itself (`#...`): a remote `$ref` or a base `$id`
    would make the validator fetch a URL chosen by the client (docs/security.md)."""
    stack, seen = [(schema, where)], set()
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            seen.update(UNBOUNDED_PAIR & node.keys())
            for key, value in node.items():
                if key in REF_KEYS and isinstance(value, str) and not value.startswith("#"):
                    raise InvalidRequest(
                        f"{path}.{key} must refer inside the schema (start with '#'); "
                        "remote references are not fetched",
                        {"field": f"{path}.{key}"},
                    )
                if key == "$id" and isinstance(value, str) and not value.startswith("#"):
                    raise InvalidRequest(
                        f"{path}.$id is not allowed: the schema may not name a base URI",
                        {"field": f"{path}.$id"},
                    )
                stack.append((value, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
    if seen == UNBOUNDED_PAIR:
        raise InvalidRequest(
            f"{where} may not combine unevaluatedProperties with patternProperties: jsonschema "
            "matches those patterns without a time bound; use additionalProperties instead",
            {"field": where},
        )


def last_message_rule(role: str) -> None:
    """The one rule on a conversation's end, for the ingress and the engine alike."""
    if role != "user":
        raise ValueError("the last message must have role 'user'")


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Messages given as plain data (across a handle) as checked `{role, content}` dicts."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("inputs.messages must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise InvalidRequest(
                f"inputs.messages[{i}] must have exactly the keys role and content"
            )
        if m["role"] not in ROLES or not isinstance(m["content"], str):
            raise InvalidRequest(
                f"inputs.messages[{i}]: role must be one of {list(ROLES)} and content a string"
            )
        out.append({"role": m["role"], "content": m["content"]})
    try:
        last_message_rule(out[-1]["role"])
    except ValueError as e:
        raise InvalidRequest(f"inputs.messages: {e}") from None
    return out


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatInputs(Strict):
    prompts: list[str] | None = Field(None, max_length=MAX_PROMPTS)
    system: str | None = None
    messages: list[Message] | None = Field(None, max_length=MAX_MESSAGES)

    @model_validator(mode="after")
    def _shape(self) -> "ChatInputs":
        exactly_one(self, ("prompts", "messages"))
        if self.prompts is not None:
            if not self.prompts:
                raise ValueError("inputs.prompts is an empty list")
            for i, p in enumerate(self.prompts):
                check_text(p, f"inputs.prompts[{i}]")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("inputs.messages is an empty list")
            if self.system is not None:
                raise ValueError(
                    "put the system prompt in messages (role 'system') when using messages"
                )
            last_message_rule(self.messages[-1].role)
        return self


class VisionInputs(Strict):
    prompts: list[str] = Field(max_length=MAX_PROMPTS)
    system: str | None = None
    image_url: str | None = None
    image_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "VisionInputs":
        exactly_one(self, ("image_url", "image_base64"))
        if not self.prompts:
            raise ValueError("inputs.prompts is an empty list")
        for i, p in enumerate(self.prompts):
            check_text(p, f"inputs.prompts[{i}]")
        return self


class ChatParams(BaseModel):
    """The chat task's `parameters`. Unknown keys and out-of-range values raise pydantic errors;
    an invalid JSON Schema raises InvalidRequest."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(
        1.0, ge=0.0, le=2.0, description="0 = greedy; OpenAI's range and default"
    )
    max_tokens: int = Field(256, ge=1, description="cap on generated tokens per prompt")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(
        None, description="up to 4 stop strings, not included in the text"
    )
    seed: int | None = Field(None, ge=0, lt=2**63)
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON Schema the output must match"
    )
    stream: StrictBool = False

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, v):
        items = [v] if isinstance(v, str) else v
        if items is not None:
            if len(items) > 4:
                raise ValueError("at most 4 stop strings")
            if any(s == "" for s in items):
                raise ValueError("stop strings must not be empty")
        return v

    @field_validator("json_schema")
    @classmethod
    def _check_schema(cls, v):
        if v is not None:
            import jsonschema

            refuse_remote_refs(v)
            try:
                jsonschema.validators.validator_for(v).check_schema(v)
            except jsonschema.SchemaError as e:
                raise InvalidRequest(
                    f"parameters.schema is not a valid JSON Schema: {e.message}",
                    {"path": list(e.path)},
                ) from None
        return v

    def stop_list(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class ChatPayload(TypedDict, total=False):
    prompts: list[str]  # one completion each, or
    messages: list[dict[str, str]]  # one conversation ({role, content}), ending with a user message
    system: str  # with prompts only
    parameters: dict[str, Any]  # ChatParams.model_dump(by_alias=True)


class ChatGenerator(Protocol):
    """A local chat engine (models/chat.py: ChatEngine), as deployments/chat.py drives it. The
    cloud proxies take the payload itself instead (models/providers: `ProviderAdapter.run`)."""

    served_model: str

    async def start(self) -> None: ...

    async def check_health(self) -> None: ...

    def num_running(self) -> int: ...

    async def generate(
        self,
        *,
        prompts: list[str] | None = None,
        system: str | None = None,
        messages: list[dict[str, str]] | None = None,
        params: ChatParams,
        request_id: str,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """`{"responses": [...], "model": str, "tokens_used": {...}}`."""
        ...

    def stream(
        self,
        *,
        prompts: list[str] | None = None,
        system: str | None = None,
        messages: list[dict[str, str]] | None = None,
        params: ChatParams,
        request_id: str,
        timeout_s: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """`{"delta": str, "tokens": {"prompt": int, "completion": int}}` events (tokens so far),
        then `{"final": <generate()'s dict>}`."""
        ...
