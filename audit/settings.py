"""One Settings object: defaults -> ``audit.toml`` -> ``AUDIT_*`` environment variables.

Every field carries its documentation in ``metadata["doc"]``; ``docs/configuration.md`` lists
them all and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from audit.errors import ConfigError

ENV_PREFIX = "AUDIT_"
TOML_NAME = "audit.toml"


def _field(default, doc: str):
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class Settings:
    data_home: Path = _field(Path("data"), "Folder for the database, caches, demo data and logs.")
    lock_timeout_s: float = _field(
        30.0, "How long an access waits for another process's lock on the database file."
    )
    max_image_pixels: int = _field(
        100_000_000, "Images with more pixels are refused (decompression-bomb guard)."
    )
    ingest_workers: int = _field(4, "Threads that read and hash images during ingestion.")
    embedder: str = _field(
        "auto", "Embedder: auto (clip if its weights load, else imagenet), clip, imagenet, pixels "
        "or cnn."
    )
    clip_model: str = _field("ViT-B-32", "open_clip model name.")
    clip_pretrained: str = _field(
        "laion2b_s34b_b79k", "open_clip pretrained tag, or a path to a local checkpoint file."
    )
    device: str = _field("auto", "Where models run: auto (CUDA when present), cuda or cpu.")
    batch_size: int = _field(256, "Images per batch when embedding.")
    loader_workers: int = _field(2, "DataLoader worker processes that decode images.")
    knn_k: int = _field(10, "Neighbours per example in the shared kNN graph.")
    folds: int = _field(5, "Folds for the cross-fitted out-of-sample probabilities.")
    seed: int = _field(0, "Random seed for folds, training and the demo.")
    host: str = _field("127.0.0.1", "Address the dashboard binds to.")
    port: int = _field(8501, "Port the dashboard listens on.")
    heartbeat_s: float = _field(2.0, "Seconds between a worker's progress/heartbeat writes.")
    stale_after_s: float = _field(
        60.0, "A running job whose heartbeat is older than this and whose pid is dead is failed."
    )

    @property
    def db_path(self) -> Path:
        return self.data_home / "audit.duckdb"

    @property
    def demo_dir(self) -> Path:
        return self.data_home / "demo"


def field_docs() -> dict[str, str]:
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(Settings)}


def load_settings(toml_path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build Settings from the defaults, then ``audit.toml``, then ``AUDIT_*`` variables."""
    env = dict(os.environ) if env is None else env
    toml_path = Path(env.get("AUDIT_CONFIG", TOML_NAME)) if toml_path is None else toml_path
    values: dict[str, object] = {}
    values.update(_read_toml(toml_path))
    values.update(_read_env(env))
    return Settings(**{name: _coerce(name, raw) for name, raw in values.items()})


def _read_toml(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or remove it") from exc
    unknown = set(table) - set(field_docs())
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {sorted(unknown)}; see docs/configuration.md")
    return table


def _read_env(env: dict[str, str]) -> dict[str, str]:
    names = field_docs()
    return {
        key[len(ENV_PREFIX):].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX):].lower() in names
    }


def _coerce(name: str, raw: object) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    try:
        if kind == "Path":
            return Path(str(raw))
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={raw!r} is not a valid {kind}; fix it") from exc
