"""Image, text and video embeddings with open_clip. Plain Python: no Ray.

Weights come from a local file only (a pretrained tag would download); custom architectures are
open_clip config JSON files (`register_model_config`). `embed_texts` / `embed_images` return raw
float32 rows; `embed_video` samples, encodes in batches and pools. See docs/notes/engines.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from models.files import MAX_DURATION_S
from models.threads import use_torch_threads
from rawinfer.contract.errors import InvalidRequest
from rawinfer.core.deadline import NEVER, Deadline
from rawinfer.core.vectors import l2_normalize

_registered: set[str] = set()

# A deliberately tiny CLIP: encodes in milliseconds, loads through the same path as ViT-L-14.
TEST_MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_model_config(config_path: str | os.PathLike) -> str:
    """Add an open_clip model config (a JSON file with embed_dim, vision_cfg, text_cfg) to
    open_clip's registry in this process; the model name is the file's stem. Idempotent."""
    import open_clip

    path = Path(config_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"open_clip model config not found: {path}")
    cfg = json.loads(path.read_text())
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError(
            f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)"
        )
    if str(path) not in _registered:
        open_clip.add_model_config(path)
        _registered.add(str(path))
    return path.stem


def build_test_model(
    folder: Path, *, name: str = "rawinfer-test-clip", seed: int = 0
) -> tuple[str, Path]:
    """Write a tiny CLIP's config (`folder/<name>.json`) and random weights (`folder/weights.pt`,
    fixed seed), register the config here, and return (model_name, weights_path). Another process
    registers it with `register_model_config(folder / f"{name}.json")` (or ClipEngine's
    model_config_path) before loading."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(TEST_MODEL_CONFIG, indent=2))
    model_name = register_model_config(config_path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    return model_name, weights


class ClipEngine:
    def __init__(
        self,
        model_name: str,
        weights_path: str | None,
        *,
        served_model: str,
        device: str = "cpu",
        batch_size: int = 32,
        torch_threads: int | None = None,
        model_config_path: str | os.PathLike | None = None,
    ):
        self.model_name = model_name
        # absolute: open_clip checks pretrained *tags* before files, and "openai" is both a tag
        # and a possible relative file name
        self.weights_path = None if weights_path is None else os.path.abspath(weights_path)
        self.served_model = served_model
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.torch_threads = torch_threads
        self.model_config_path = model_config_path
        self.model = None
        self.dimensions: int | None = None

    normalize = staticmethod(l2_normalize)  # rows L2-normalised (rawinfer/core/vectors.py)

    def load(self) -> None:
        import open_clip
        import torch

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        if self.model_config_path is not None:
            registered = register_model_config(self.model_config_path)
            if registered != self.model_name:
                raise ValueError(
                    f"model config {self.model_config_path} defines {registered!r}, "
                    f"not {self.model_name!r}"
                )
        if self.model_name.startswith("hf-hub:"):
            raise ValueError(
                "hf-hub: model names download; give a built-in or registered model name "
                "and a local weights file, or a local-dir: folder"
            )
        if self.model_name.startswith("local-dir:"):
            pass  # open_clip reads the config and weights from the folder (weights_path is ignored)
        elif self.weights_path is not None and not os.path.isfile(self.weights_path):
            # open_clip would treat a non-file as a pretrained tag and download it.
            raise FileNotFoundError(
                f"CLIP weights file not found: {self.weights_path} (a local file is "
                "required; pretrained tags are not downloaded)"
            )
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.model_name, pretrained=self.weights_path, device=self.device, pretrained_text=False
        )  # never fetch a text tower's base weights from the hub
        model.eval()
        self.model = model
        self._preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        self.context_length = int(getattr(self.tokenizer, "context_length", 77) or 77)
        self.dimensions = int(self.embed_texts([""]).shape[1])

    # ---------------------------------------------------------------- text

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model sees them (start/end included, after truncation to the
        context length; longer texts are truncated, as open_clip does)."""
        tokens = self.tokenizer(texts)
        return [int(n) for n in (tokens != 0).sum(dim=1).tolist()]

    def embed_texts(self, texts: list[str], deadline: Deadline = NEVER) -> np.ndarray:
        """Raw float32 text embeddings, one row per text (texts beyond the context length are
        truncated)."""
        import torch

        use_torch_threads(self.torch_threads)  # this may be a worker thread (models/threads.py)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                deadline.check(f"{self.served_model}'s text embedding")
                tokens = self.tokenizer(texts[i : i + self.batch_size]).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return (
            np.concatenate(out).astype(np.float32)
            if out
            else np.zeros((0, self.dimensions or 0), np.float32)
        )

    # ---------------------------------------------------------------- images

    def preprocess(self, images: list):
        """A batch tensor [n, 3, H, W] from RGB PIL images (open_clip's eval transform)."""
        import torch

        return torch.stack([self._preprocess(im) for im in images])

    def encode_batch(self, pixels) -> np.ndarray:
        """Raw float32 image embeddings of an already preprocessed batch."""
        import torch

        use_torch_threads(self.torch_threads)  # this may be a worker thread (models/threads.py)
        with torch.inference_mode():
            return (
                self.model.encode_image(pixels.to(self.device))
                .float()
                .cpu()
                .numpy()
                .astype(np.float32)
            )

    def embed_images(self, images: list) -> np.ndarray:
        """Raw float32 image embeddings, one row per image, encoded batch_size at a time."""
        out = [
            self.encode_batch(self.preprocess(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dimensions or 0), np.float32)

    # ---------------------------------------------------------------- video

    def embed_video(
        self,
        data: bytes,
        *,
        interval_sec: float,
        max_frames: int,
        normalize: bool = True,
        max_duration_s: float = MAX_DURATION_S,
        deadline: Deadline = NEVER,
    ) -> dict[str, Any]:
        """The contract's video data: one segment per sampled frame, and a pooled vector.

        Frames are decoded and preprocessed in a thread one batch ahead of the encoder (the
        decoded frame is dropped at once; at most two batches are held) and encoded batch_size
        at a time. With `normalize`, segment embeddings are L2-normalised and
        the pooled vector is the normalised mean of them; without, both are raw (the pooled
        vector is the mean of the raw segment embeddings)."""
        import torch

        from models.video import iter_video_frames, read_ahead

        times: list[tuple[float, float]] = []
        rows: list[np.ndarray] = []
        pending: list = []
        frames = iter_video_frames(
            data,
            interval_sec=interval_sec,
            max_frames=max_frames,
            max_duration_s=max_duration_s,
            deadline=deadline,
        )
        # decoding and preprocessing run one batch ahead of the encoder, in a thread
        for start, end, pixels in read_ahead(
            frames, self.batch_size, lambda f: (f[0], f[1], self._preprocess(f[2]))
        ):
            times.append((float(start), float(end)))
            pending.append(pixels)
            if len(pending) >= self.batch_size:
                deadline.check(f"{self.served_model}'s video embedding")
                rows.append(self.encode_batch(torch.stack(pending)))
                pending = []
        if pending:
            rows.append(self.encode_batch(torch.stack(pending)))
        if not times:
            raise InvalidRequest(
                "The video gave no frames to embed; send a longer video or a smaller interval_sec."
            )
        segments = np.concatenate(rows)
        if normalize:
            segments = self.normalize(segments)
            pooled = self.normalize(segments.mean(axis=0))
        else:
            pooled = segments.mean(axis=0).astype(np.float32)
        return {
            "embedding": pooled,
            "dimensions": int(segments.shape[1]),
            "segments": [
                {"start": round(s, 6), "end": round(e, 6), "embedding": row}
                for (s, e), row in zip(times, segments)
            ],
        }
