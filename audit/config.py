"""What one audit run does: ``AuditConfig``, filled from Settings and validated, with the
single list of each choice (devices here; embedders in ``audit.embedders``, probes in
``audit.probe``, detectors in their registry). Light: reading it loads no model library, so
the CLI and the dashboard validate and queue an audit without torch (``audit.plan`` runs it).
"""

from __future__ import annotations

import dataclasses
import json

from audit.classes import check_order_names
from audit.embedders import EMBEDDER_CHOICES
from audit.errors import ConfigError
from audit.settings import EXECUTORS, Settings

DEVICES = ("auto", "cuda", "cpu")


def registry() -> dict:
    """Every registered detector (importing ``audit.detectors`` registers them)."""
    import audit.detectors  # noqa: F401
    from audit.detectors.base import REGISTRY

    return REGISTRY


@dataclasses.dataclass
class AuditConfig:
    """What one audit run does; ``from_dict`` fills the gaps from Settings and validates."""

    detectors: list[str]
    embedder: str
    clip_model: str
    clip_pretrained: str
    device: str
    k: int
    folds: int
    seed: int
    seeds: int = 3
    probe: str = "mlp"
    batch_size: int = 256
    loader_workers: int = 2
    params: dict = dataclasses.field(default_factory=dict)
    embeddings_file: str | None = None
    pred_probs_file: str | None = None
    class_order: list[str] | None = None    # pred_probs column order; None: audit.classes
    use_decisions: bool = False             # start from the reviewed state (audit.corrections)
    executor: str = "local"                 # where the heavy stages run (audit.executors)
    ray_address: str = ""                   # the ray executor's cluster ("": a local instance)

    @classmethod
    def from_dict(cls, overrides: dict, settings: Settings) -> "AuditConfig":
        overrides = dict(overrides or {})
        _reject_unknown_keys(overrides)
        values = {**_settings_defaults(settings), **overrides}
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> None:
        _check_choice("embedder", self.embedder, EMBEDDER_CHOICES)
        _check_choice("device", self.device, DEVICES)
        executor_choice(self.executor, self.ray_address)
        from audit.probe import PROBES

        _check_choice("probe", self.probe, PROBES)
        _check_detectors(self.detectors)
        _check_params(self.params)
        for name, low in (("k", 1), ("folds", 2), ("seeds", 1), ("batch_size", 1),
                          ("loader_workers", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name}={value!r} is not allowed; give an integer >= {low}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} is not an integer; give one")
        if not isinstance(self.use_decisions, bool):
            raise ConfigError(f"use_decisions={self.use_decisions!r} is not allowed; give true "
                              "or false")
        if self.class_order is not None:
            check_order_names(self.class_order)


def executor_choice(executor: str, ray_address: str) -> dict:
    """``{"executor": ..., "ray_address": ...}`` once both are checked (audits and ingests)."""
    _check_choice("executor", executor, EXECUTORS)
    if not isinstance(ray_address, str):
        raise ConfigError(f"ray_address={ray_address!r} is not allowed; give a text: "
                          "empty (a local Ray instance), auto or host:port")
    return {"executor": executor, "ray_address": ray_address}


def _settings_defaults(settings: Settings) -> dict:
    return {"detectors": sorted(registry()), "embedder": settings.embedder,
            "clip_model": settings.clip_model, "clip_pretrained": settings.clip_pretrained,
            "device": settings.device, "k": settings.knn_k, "folds": settings.folds,
            "seed": settings.seed, "batch_size": settings.batch_size,
            "loader_workers": settings.loader_workers, "executor": settings.executor,
            "ray_address": settings.ray_address}


def _reject_unknown_keys(overrides: dict) -> None:
    known = {f.name for f in dataclasses.fields(AuditConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown audit option(s) {unknown}; valid: {', '.join(sorted(known))}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_detectors(names: object) -> None:
    known = registry()
    if not isinstance(names, list) or not names:
        raise ConfigError("detectors must be a non-empty list; choose from "
                          f"{', '.join(sorted(known))}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown detector(s) {unknown}; choose from {', '.join(sorted(known))}")


def _check_params(params: object) -> None:
    known = registry()
    if not isinstance(params, dict):
        raise ConfigError("params must map a detector name to its parameter overrides")
    for name, overrides in params.items():
        _check_detectors([name])
        valid = set(known[name].params)
        unknown = sorted(set(overrides or {}) - valid)
        if unknown:
            raise ConfigError(f"detector {name!r} has no parameter(s) {unknown}; "
                              f"valid: {', '.join(sorted(valid)) or 'none'}")
