"""Ray Serve deployments wrapping the engines in models/. REGISTRY maps a catalog backend's
`engine` to its deployment class; the app builder binds one deployment per configured backend."""
from __future__ import annotations

from deployments.chat import ChatDeployment
from deployments.clip import ClipDeployment
from deployments.provider import ProviderDeployment
from deployments.text_embedding import TextEmbeddingDeployment
from deployments.transcription import TranscriptionDeployment

REGISTRY = {
    "chat": ChatDeployment,
    "clip": ClipDeployment,
    "provider": ProviderDeployment,
    "text_embedding": TextEmbeddingDeployment,
    "transcription": TranscriptionDeployment,
}
