"""One Settings object: defaults -> ``audit.toml`` -> ``AUDIT_*`` environment variables.

Every field carries its documentation in ``metadata["doc"]``; ``docs/configuration.md`` lists
them all and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from pathlib import Path

from audit.errors import ConfigError

ENV_PREFIX = "AUDIT_"
TOML_NAME = "audit.toml"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
EXECUTORS = ("local", "ray")   # where the heavy stages run (audit/executors.py)


def _field(default, doc: str):
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True)
class Settings:
    data_home: Path = _field(Path("data"), "Folder for the database, caches, demo data and logs.")
    lock_timeout_s: float = _field(
        30.0, "How long an access waits for another Sieve process's turn at the database file."
    )
    audit_lock_wait_s: float = _field(
        300.0, "How long a running audit retries (with backoff) while a program outside Sieve "
        "holds the database file; commands and the dashboard say at once which program it is."
    )
    max_image_pixels: int = _field(
        100_000_000, "Images with more pixels are refused (decompression-bomb guard)."
    )
    max_file_bytes: int = _field(
        268_435_456, "Image and manifest files larger than this (256 MiB) are not read; an image "
        "over it is recorded as unreadable, a manifest over it is refused."
    )
    follow_outside_links: bool = _field(
        False, "Read files through symbolic links that lead outside the dataset folder (off: "
        "ingest refuses such a link and nothing reads through one)."
    )
    ingest_workers: int = _field(4, "Threads that read and hash images during ingestion.")
    embedder: str = _field(
        "auto", "Embedder: auto (clip if its weights load, else imagenet; pixels instead when they "
        "explain the labels clearly better), clip, imagenet, pixels or cnn."
    )
    clip_model: str = _field("ViT-B-32", "open_clip model name.")
    clip_pretrained: str = _field(
        "laion2b_s34b_b79k", "open_clip pretrained tag, or a path to a local checkpoint file."
    )
    device: str = _field("auto", "Where models run: auto (CUDA when present), cuda or cpu.")
    batch_size: int = _field(256, "Images per batch when embedding.")
    loader_workers: int = _field(2, "DataLoader worker processes that decode images (local "
                                    "executor; on Ray the cluster's CPUs decode).")
    executor: str = _field(
        "local", "Where an audit's heavy stages (decode + embed, the probe's folds, the kNN "
        "graph's searches) and an ingest's image reading run: local (this process) or ray (a "
        "Ray Data pipeline for decode + embed, Ray tasks for the rest; see docs/scaling.md)."
    )
    ray_address: str = _field(
        "", "The Ray cluster of the ray executor: empty starts a local Ray instance for the run, "
        "auto joins the running cluster, anything else is a cluster address (host:port)."
    )
    knn_k: int = _field(10, "Neighbours per example in the shared kNN graph.")
    folds: int = _field(5, "Folds for the cross-fitted out-of-sample probabilities.")
    seed: int = _field(0, "Random seed for folds, training and the demo.")
    host: str = _field(
        "127.0.0.1", "Address the dashboard binds to; any other than a loopback address needs "
        "`serve --allow-remote` (the dashboard has no login)."
    )
    port: int = _field(8501, "Port the dashboard listens on.")
    heartbeat_s: float = _field(2.0, "Seconds between a worker's progress/heartbeat writes.")
    stale_after_s: float = _field(
        60.0, "A running job of another host whose heartbeat is older than this is failed (on "
        "this host a job is failed as soon as its worker is gone)."
    )

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"setting executor={self.executor!r} is not allowed; choose one of "
                              f"{', '.join(EXECUTORS)}")

    @property
    def db_path(self) -> Path:
        return self.data_home / "audit.duckdb"

    @property
    def demo_dir(self) -> Path:
        return self.data_home / "demo"


def field_docs() -> dict[str, str]:
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(Settings)}


def config_path(env: dict[str, str] | None = None) -> Path:
    """The ``audit.toml`` that settings are read from: ``AUDIT_CONFIG``, else the working
    directory's."""
    env = os.environ if env is None else env
    return Path(env.get("AUDIT_CONFIG", TOML_NAME))


def load_settings(toml_path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Build Settings from the defaults, then ``audit.toml``, then ``AUDIT_*`` variables."""
    env = dict(os.environ) if env is None else env
    toml_path = config_path(env) if toml_path is None else toml_path
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
        if kind == "bool":
            return _as_bool(raw)
        return str(raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"setting {name}={raw!r} is not a valid {kind}; fix it") from exc


def _as_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError(f"expected one of {sorted(TRUE_WORDS | FALSE_WORDS)}")
    return text in TRUE_WORDS


def check_data_home(settings: Settings) -> Path:
    """The data home, created if missing; a ``ConfigError`` when this process cannot write
    there (a read-only disk or folder), which every command and page needs to."""
    home = Path(settings.data_home)
    try:
        home.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=home).close()
        if settings.db_path.exists() and not os.access(settings.db_path, os.W_OK):
            raise PermissionError(f"{settings.db_path} is read-only")
    except OSError as exc:
        raise ConfigError(
            f"data home {home.resolve()} is not writable ({exc.strerror or exc}); set data_home "
            "in audit.toml or AUDIT_DATA_HOME to a folder you can write, or fix its permissions"
        ) from exc
    return home
