"""Whole-audit wall time through the real product: files on disk -> ingest -> run_audit.

    python -m bench.bench_audit_time                      # the demo, default (auto) embedder
    python -m bench.bench_audit_time --dataset cifar --embedder imagenet
    python -m bench.bench_audit_time --dataset cifar --images 500    # a small folder

Each run starts from a cold cache (a fresh temporary data home): the images are written as
PNG files, ingested into a new store and audited with every detector by ``audit.plan.run_audit``.
Prints the stage timings, the embedder that ran and its images per second (embed stage only).
CIFAR-10N needs ``../shared/datasets/cifar10n-10k`` (its ``aggre_label`` column is the label).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from audit.ingest import ingest
from audit.demo import generate_demo
from audit.plan import run_audit
from audit.settings import load_settings
from audit.store import Store
from audit.store.runs import get_run
from bench import markdown_table
from bench.bench_quality import CIFAR_CLASSES, CIFAR_PATH


def cifar_manifest(folder: Path, images: int) -> Path:
    """The first ``images`` CIFAR-10N images as PNGs with a manifest of their aggre_label."""
    data = np.load(CIFAR_PATH)
    folder.mkdir(parents=True)
    rows = []
    for i, (pixels, label) in enumerate(zip(data["images"][:images],
                                            data["aggre_label"][:images])):
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
        rows.append({"path": f"{i:05d}.png", "label": CIFAR_CLASSES[int(label)]})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def audit_once(workdir: Path, dataset: str, embedder: str, images: int) -> dict:
    manifest = (cifar_manifest(workdir / "files", images) if dataset == "cifar"
                else generate_demo(workdir / "files", seed=0)[0])
    settings = load_settings(toml_path=workdir / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(workdir / "home")})
    store = Store.from_settings(settings)
    started = time.perf_counter()
    dataset_id = ingest(store, manifest, settings, name=dataset)
    ingested = time.perf_counter()
    run_id = run_audit(store, settings, dataset_id, {"embedder": embedder})
    finished = time.perf_counter()
    run = get_run(store, run_id)
    timings = json.loads(run["timings"])
    summary = json.loads(run["summary"] or "{}")
    images = usable_count(store, dataset_id)
    return {"dataset": dataset, "images": images,
            "embedder": summary.get("embedder", {}).get("model_id"),
            "ingest s": ingested - started, "audit s": finished - ingested,
            "embed s": timings.get("embed"),
            "img/s": images / max(timings.get("embed", 0.0), 1e-9), "probe s": timings.get("probe"),
            "detectors s": sum(v for k, v in timings.items() if k.startswith("detector:"))}


def usable_count(store: Store, dataset_id: int) -> int:
    from audit.store.datasets import samples_frame

    return int(samples_frame(store, dataset_id)["load_error"].isna().sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("demo", "cifar"), default="demo")
    parser.add_argument("--embedder", default="auto")
    parser.add_argument("--images", type=int, default=10_000,
                        help="cifar: audit the first this many of its 10,000 images")
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        row = audit_once(Path(tmp), args.dataset, args.embedder, args.images)
    print(markdown_table(pd.DataFrame([row])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
