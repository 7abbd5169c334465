"""CLIP through open_clip: image and text towers, batched, on CUDA with autocast when present.

Weights come from a pretrained tag (looked up in the local Hugging Face cache first; the hub is
only contacted when it answers within seconds) or a local checkpoint file (read with
``weights_only=True``). When neither is possible, ``ModelUnavailableError`` says which model and
tag and how to supply the file. ``pretrained=None`` builds the architecture with random weights
(tests use a tiny config); such a model is marked ``pretrained=False`` and semantic detectors
(``vl_consistency``) do not trust it unless it is handed to them explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from audit.embedders import (EmbedContext, Embedding, ImageRows, Progress, ShouldCancel,
                             in_forward_passes, l2_normalise)
from audit.embedders.loader import (EncodeFiles, FileEncoding, encode_cached,
                                    encode_files_locally)
from audit.errors import ConfigError, ModelUnavailableError

HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 3.0


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a ConfigError."""
    if device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"unknown device {device!r}; choose auto, cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use auto or cpu")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ClipModel:
    """A loaded open_clip model with its preprocessing and tokenizer.

    ``encode_tensor(batch)``, ``encode_pil(images)`` and ``encode_texts(texts)`` return
    L2-normalised float32 rows; ``file_encoding()`` says how image files become them.
    ``image_embeddings`` is set by the audit plan when the run's embeddings came from this model
    (row-aligned with the detector inputs), so detectors need not encode the images twice.
    """

    def __init__(self, model, preprocess, tokenizer, model_id: str, pretrained: bool, device: str):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.model_id, self.pretrained, self.device = model_id, pretrained, device
        self.image_embeddings: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.model.visual.image_size
        side = size if isinstance(size, int) else size[0]
        return (3, side, side)

    def encode_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """One preprocessed image batch -> normalised vectors."""
        return in_forward_passes(batch, self.device, self._encode_pass)

    def _encode_pass(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_image(batch.to(self.device, non_blocking=True))
        return l2_normalise(features.float().cpu().numpy())

    def encode_pil(self, images: list) -> np.ndarray:
        return self.encode_tensor(torch.stack([self.preprocess(image) for image in images]))

    def encode_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        chunks = [self._encode_text_batch(texts[i:i + batch_size])
                  for i in range(0, len(texts), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    def file_encoding(self) -> FileEncoding:
        """Image files -> vectors: open_clip's preprocessing, then the image tower."""
        return FileEncoding(self.model_id, self.preprocess, self.image_shape, self.embed_dim,
                            np.float32, self.encode_tensor)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (about 100 for trained models)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_text(tokens)
        return l2_normalise(features.float().cpu().numpy())

    def _autocast(self):
        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


class ClipEmbedder:
    """The ``clip`` embedder: image-tower vectors, cached by model id + sha256."""

    name = "clip"

    def __init__(self, clip: ClipModel, context: EmbedContext):
        self.clip, self.context, self.model_id = clip, context, clip.model_id

    def embed(self, rows: ImageRows, progress: Progress | None = None,
              should_cancel: ShouldCancel | None = None,
              encode_files: EncodeFiles = encode_files_locally) -> Embedding:
        vectors, failed = encode_cached(self.clip.file_encoding(), rows.paths, rows.hashes,
                                        self.context, encode_files, progress, should_cancel)
        return Embedding(vectors, self.model_id, failed)

    def file_encoding(self) -> FileEncoding:
        return self.clip.file_encoding()


def load_clip(model_name: str, pretrained: str | None, device: str = "auto") -> ClipModel:
    """Load an open_clip model: a pretrained tag, a checkpoint file, or None (random weights)."""
    import open_clip

    device = resolve_device(device)
    _check_model_name(open_clip, model_name)
    if not pretrained:
        return _build(open_clip, model_name, None, device, f"clip-{model_name}-random", False, {})
    if Path(pretrained).expanduser().is_file():
        return _load_file(open_clip, model_name, Path(pretrained).expanduser().resolve(), device)
    return _load_tag(open_clip, model_name, pretrained, device)


def _check_model_name(open_clip, model_name: str) -> None:
    if open_clip.get_model_config(model_name) is None:
        known = open_clip.list_models()
        raise ConfigError(f"unknown open_clip model {model_name!r}; known models include "
                          f"{', '.join(known[:8])} ... ({len(known)} in all, e.g. ViT-B-32)")


def _load_file(open_clip, model_name: str, path: Path, device: str) -> ClipModel:
    try:
        return _build(open_clip, model_name, str(path), device, _file_model_id(model_name, path),
                      True, {})
    except (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelUnavailableError(
            f"{path}: not a usable {model_name} checkpoint ({str(exc)[:200]}); pass the "
            "open_clip checkpoint file that matches --clip-model") from exc


def _load_tag(open_clip, model_name: str, tag: str, device: str) -> ClipModel:
    config = open_clip.get_pretrained_cfg(model_name, tag)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ConfigError(f"{tag!r} is neither a pretrained tag of {model_name} ({', '.join(tags)})"
                          " nor an existing checkpoint file; fix --clip-pretrained")
    model_id = f"clip-{model_name}-{tag}"
    local = _cached_checkpoint(config)
    if local is not None:
        return _build(open_clip, model_name, local, device, model_id, True, _preprocess_of(config))
    host = _download_host(config)
    if not _reachable(host):
        raise ModelUnavailableError(_unavailable(model_name, tag, f"{host} cannot be reached"))
    try:
        return _build(open_clip, model_name, tag, device, model_id, True, {})
    except RuntimeError as exc:
        raise ModelUnavailableError(_unavailable(model_name, tag, str(exc)[:200])) from exc


def _unavailable(model_name: str, tag: str, why: str) -> str:
    return (f"CLIP weights for {model_name} / {tag} are not available ({why}, and they are not in "
            "the local cache); download the checkpoint file on a machine with network, copy it "
            "here and pass --clip-pretrained /path/to/open_clip_pytorch_model.bin "
            "(or set AUDIT_CLIP_PRETRAINED), or use --embedder pixels/cnn")


def _cached_checkpoint(config: dict) -> str | None:
    """The weights file of a tag when it is already in the local HF or open_clip cache."""
    if config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(config["hf_hub"])
        for name in _weight_names(filename):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and Path(found).is_file():
                return found
    if config.get("url"):
        candidate = Path.home() / ".cache" / "clip" / os.path.basename(config["url"])
        return str(candidate) if candidate.is_file() else None
    return None


def _weight_names(filename: str) -> list[str]:
    if filename:
        return [filename.replace(".bin", ".safetensors"), filename]
    return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def _preprocess_of(config: dict) -> dict:
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
            "resize_mode": "image_resize_mode"}
    chosen = {arg: config[key] for key, arg in keys.items() if config.get(key)}
    if config.get("quick_gelu"):
        chosen["force_quick_gelu"] = True
    return chosen


def _download_host(config: dict) -> str:
    if config.get("hf_hub"):
        return HUB_HOST
    return urlparse(config.get("url", "")).hostname or HUB_HOST


def _reachable(host: str) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=HUB_TIMEOUT_S):
            return True
    except OSError:
        return False


def _file_model_id(model_name: str, path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return f"clip-{model_name}-file-{digest[:16]}"


def _build(open_clip, model_name: str, pretrained: str | None, device: str, model_id: str,
           is_pretrained: bool, extra: dict) -> ClipModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random-weight models are deterministic, so their cache is valid
        # weights_only=True: a checkpoint file is data, never code (open_clip's default, pinned here)
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device, weights_only=True, **extra)
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipModel(model, preprocess, tokenizer, model_id, is_pretrained, device)

