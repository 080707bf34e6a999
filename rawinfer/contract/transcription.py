"""The transcription task: inputs, Whisper's parameters and language table, the payload that
crosses the handle, and the engine Protocol. Light enough for the ingress and the OpenAI proxy
(no faster-whisper import); tests check the table against faster-whisper's."""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from rawinfer.contract.base import Strict, exactly_one
from rawinfer.contract.errors import InvalidRequest

# Whisper's languages: code -> the name verbose_json reports
WHISPER_LANGUAGES: dict[str, str] = dict(
    item.split(":")
    for item in (
        "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese "
        "pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian "
        "id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek "
        "ms:malay cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian th:thai "
        "ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh "
        "sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani "
        "sl:slovenian kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic "
        "hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili "
        "gl:galician mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali "
        "af:afrikaans oc:occitan ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati "
        "am:amharic yi:yiddish lo:lao uz:uzbek fo:faroese ht:haitian_creole ps:pashto "
        "tk:turkmen nn:nynorsk mt:maltese sa:sanskrit lb:luxembourgish my:myanmar bo:tibetan "
        "tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian ln:lingala ha:hausa "
        "ba:bashkir jw:javanese su:sundanese yue:cantonese"
    ).split()
)
LANGUAGE_CODES: frozenset[str] = frozenset(WHISPER_LANGUAGES)
LANGUAGE_BY_NAME: dict[str, str] = {
    name.replace("_", " "): code for code, name in WHISPER_LANGUAGES.items()
}


class TranscriptionInputs(Strict):
    audio_url: str | None = None
    audio_base64: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "TranscriptionInputs":
        exactly_one(self, ("audio_url", "audio_base64"))
        return self


class TranscriptionParams(BaseModel):
    """`parameters` of a transcription request. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(
        None, description="ISO 639-1 code (e.g. 'en', 'fr'); detected when absent"
    )
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: StrictBool = False
    vad_filter: StrictBool = False
    beam_size: int = Field(5, ge=1, le=10)

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().lower()
        if code not in LANGUAGE_CODES:
            raise ValueError(
                f"unknown language {value!r}; use a Whisper language code such as 'en', 'fr', "
                "'de', 'es', 'zh', or leave it out to detect the language"
            )
        return code


def parse_transcription_params(raw: dict[str, Any] | None) -> TranscriptionParams:
    """`TranscriptionParams` from a request's `parameters`, with InvalidRequest (naming each bad
    field) instead of pydantic's ValidationError."""
    try:
        return TranscriptionParams.model_validate(raw or {})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in err.get("loc", ())) or "parameters"
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = (
                    "unknown parameter for transcription (allowed: "
                    + ", ".join(TranscriptionParams.model_fields)
                    + ")"
                )
            problems.append(f"{where}: {msg}")
        raise InvalidRequest(
            "Invalid transcription parameters: " + "; ".join(problems), {"errors": problems}
        ) from None


class TranscriptionPayload(TypedDict):
    audio: bytes  # the file as given (any container PyAV decodes), fetched at the ingress
    parameters: dict[str, Any]  # TranscriptionParams.model_dump()


class Transcriber(Protocol):
    """A transcription engine (models/transcription.py), as deployments/transcription.py
    drives it: `check_params` before decoding the audio, then `transcribe`."""

    served_model: str

    def load(self) -> None: ...

    def check_params(self, params: TranscriptionParams) -> None:
        """Refuses (400) what this model cannot do (a language or translation on .en models)."""
        ...

    def transcribe(
        self, audio: np.ndarray, params: TranscriptionParams, *, batched: bool | None = None
    ) -> dict[str, Any]:
        """The contract's transcription data from 16 kHz mono float32 samples."""
        ...
