"""Anthropic through the official `anthropic` SDK (AsyncAnthropic, SDK retries off): chat and
vision on the Messages API (`messages.create`); `schema` as a forced tool. Decisions:
docs/notes/engines.md#anthropic."""

from __future__ import annotations

import base64
import json
from typing import Any

from models.providers.base import (
    Deadline,
    Failure,
    ProviderAdapter,
    body_message,
    retry_after_from_headers,
)
from models.providers.helpers import (
    Completion,
    chat_conversations,
    chat_data,
    image_of,
    parse_params,
    run_all,
    set_params,
    split_system,
)
from rawinfer.contract import ChatParams
from rawinfer.contract.errors import ProviderError

TOOL = "output"


class AnthropicAdapter(ProviderAdapter):
    name = "anthropic"
    sdk_modules = ("anthropic", "anthropic.resources.messages")

    def client(self):
        def make():
            from anthropic import AsyncAnthropic

            return AsyncAnthropic(
                api_key=self.settings.key(),
                base_url=self.settings.base_url or None,
                timeout=self.settings.timeout_s,
                max_retries=0,
            )

        return self._loop_client(make)

    def classify(self, exc: BaseException) -> Failure | None:
        import anthropic

        if isinstance(exc, anthropic.APITimeoutError):
            return Failure("timeout")
        if isinstance(exc, anthropic.APIConnectionError):
            return Failure("connection")
        if isinstance(exc, anthropic.APIStatusError):
            message, typ = body_message(exc.body)
            return Failure(
                "status",
                exc.status_code,
                message or exc.message,
                typ,
                retry_after_from_headers(exc.response.headers),
            )
        return None

    async def _complete(
        self,
        model: str,
        system: str | None,
        messages: list[dict],
        params: ChatParams,
        deadline: Deadline,
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_tokens,
            "messages": messages,
        }
        if system:
            kwargs["system"] = system
        if params.stop is not None:
            kwargs["stop_sequences"] = params.stop_list()
        sampling = set_params(params, "temperature", "top_p")
        if sampling:
            kwargs["extra_body"] = sampling
        wrapped = False
        if params.json_schema is not None:
            schema = params.json_schema
            if schema.get("type") != "object":
                schema, wrapped = (
                    {"type": "object", "properties": {"value": schema}, "required": ["value"]},
                    True,
                )
            kwargs["tools"] = [
                {
                    "name": TOOL,
                    "description": "Answer by calling this tool with the answer as input.",
                    "input_schema": schema,
                }
            ]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL}
        client = self.client()
        msg = await self.call(
            lambda t: client.messages.create(**kwargs, timeout=t), deadline, "the message"
        )
        text = "".join(b.text for b in msg.content if getattr(b, "type", None) == "text")
        finish = "length" if msg.stop_reason == "max_tokens" else "stop"
        out = Completion(
            text, finish, msg.usage.input_tokens or 0, msg.usage.output_tokens or 0, msg.model
        )
        if params.json_schema is not None:
            call = next(
                (
                    b
                    for b in msg.content
                    if getattr(b, "type", None) == "tool_use" and b.name == TOOL
                ),
                None,
            )
            if call is None:
                raise ProviderError(
                    "anthropic did not answer in parameters.schema"
                    + (
                        f"; the output was cut at max_tokens={params.max_tokens}, raise it"
                        if finish == "length"
                        else ""
                    ),
                    {"provider": self.name, "stop_reason": msg.stop_reason},
                )
            parsed = (
                call.input.get("value") if wrapped and isinstance(call.input, dict) else call.input
            )
            out.parsed, out.has_parsed, out.text = (
                parsed,
                True,
                json.dumps(parsed, ensure_ascii=False),
            )
        return out

    async def _answer(
        self,
        task: str,
        model: str,
        inputs: dict,
        parameters: dict,
        deadline: Deadline,
        image_block: dict | None,
    ) -> dict:
        params = parse_params(ChatParams, parameters)
        system, conversations = chat_conversations(task, inputs)
        jobs = []
        for conv in conversations:
            sys_text, turns = split_system(conv, system)
            if image_block is not None:
                turns = [
                    {
                        "role": "user",
                        "content": [image_block, {"type": "text", "text": turns[0]["content"]}],
                    }
                ]
            jobs.append(lambda s=sys_text, m=turns: self._complete(model, s, m, params, deadline))
        return chat_data(self.name, await run_all(jobs), params, model)

    async def _chat(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        return await self._answer("chat", model, inputs, parameters, deadline, None)

    async def _vision(self, model: str, inputs: dict, parameters: dict, deadline: Deadline) -> dict:
        data, mime = image_of(inputs)
        block = {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": mime,
                "data": base64.b64encode(data).decode("ascii"),
            },
        }
        return await self._answer("vision", model, inputs, parameters, deadline, block)
