"""Detection quality: Sieve's detectors against planted and real label noise, beside cleanlab.

    python -m bench.bench_quality [--embedder imagenet|pixels|cnn ...] [--skip-demo]
                                  [--skip-cifar] [--cache DIR]

1. The demo (``audit.demo.generate_demo``): precision, recall, F1 of every detector's
   ``is_issue`` and AUROC of its score against ``truth.json`` (which kind of planted problem
   each detector is judged on is ``DEMO_TRUTH``).
2. CIFAR-10N, first 10k training images (``../shared/datasets/cifar10n-10k``), with
   ``aggre_label`` (the only column used for tuning), ``random_label1`` and ``worse_label``
   (untouched) as the given labels (truth: differs from ``clean_label``): the label detectors,
   and on the SAME embeddings and pred_probs cleanlab's ``Datalab.find_issues`` defaults and
   ``cleanlab.filter.find_label_issues``. Besides each embedder's own run, the configuration
   "pixels + supplied" gives the detectors weak ``pixels`` embeddings and strong pred_probs
   (cross-fitted on the ``imagenet`` features), as a user with a good model of their own would.

The demo goes through the real product (ingest into a temporary store, ``audit.plan.run_audit``);
CIFAR-10N runs the plan's stages (offline embedder, cross-fitted probe, kNN graph, detectors)
on in-memory arrays, so cleanlab sees exactly the same embeddings and pred_probs.
Prints markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from audit.detectors import REGISTRY, DetectorInputs
from audit.knn import build_knn_graph
from audit.probe import cross_fit_probe
from bench import markdown_table

ROOT = Path(__file__).resolve().parent.parent
CIFAR_PATH = ROOT.parent / "shared" / "datasets" / "cifar10n-10k" / "cifar10n_10k.npz"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
CIFAR_COLUMNS = ("aggre_label", "random_label1", "worse_label")
SUPPLIED = "pixels + supplied"     # pixels embeddings, pred_probs cross-fitted on imagenet's
LABEL_DETECTORS = ("label_issue", "knn_label", "training_dynamics", "overall")
DETECTOR_ORDER = ("label_issue", "knn_label", "training_dynamics", "outlier", "near_duplicate",
                  "image_quality", "vl_consistency", "overall")
K, FOLDS, SEED = 10, 5, 0


def quiet(fraction: float, message: str) -> None:
    return None


# --- metrics -------------------------------------------------------------------------------

def ranking_metrics(score: np.ndarray | None, truth: np.ndarray, top: int = 48) -> dict:
    """Precision of the ``top`` lowest scores and the best F1 over every threshold."""
    if score is None:
        return {f"p@{top}": float("nan"), "best_f1": float("nan")}
    order = np.argsort(np.asarray(score, dtype=float), kind="stable")
    hits = np.cumsum(truth[order])
    best_f1 = (2 * hits / (np.arange(1, len(order) + 1) + truth.sum())).max()
    return {f"p@{top}": float(truth[order[:top]].mean()), "best_f1": float(best_f1)}


def flag_metrics(flags: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall and F1 of a boolean flag vector against a boolean truth."""
    hits = int((flags & truth).sum())
    precision = hits / max(int(flags.sum()), 1)
    recall = hits / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"flagged": int(flags.sum()), "precision": precision, "recall": recall, "f1": f1}


def score_auroc(score: np.ndarray | None, truth: np.ndarray) -> float:
    """AUROC of ``1 - score`` (lower score = more likely a problem) against the truth."""
    if score is None or truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, -np.asarray(score, dtype=float)))


def metrics_row(name: str, flags: np.ndarray, score: np.ndarray | None, truth: np.ndarray) -> dict:
    return {"method": name, **flag_metrics(np.asarray(flags, bool), truth),
            "auroc": score_auroc(score, truth), **ranking_metrics(score, truth)}


# --- running the detectors on arrays --------------------------------------------------------

def array_inputs(embeddings: np.ndarray, labels: np.ndarray, class_names: list[str],
                 pred_probs: np.ndarray) -> DetectorInputs:
    """DetectorInputs for in-memory 32x32 images, with the shared kNN graph built here."""
    n = len(labels)
    return DetectorInputs(sample_ids=[str(i) for i in range(n)], labels=labels,
                          class_names=class_names, splits=np.array(["train"] * n),
                          sha256=[None] * n, widths=np.full(n, 32), heights=np.full(n, 32),
                          embeddings=embeddings, pred_probs=pred_probs,
                          knn=build_knn_graph(embeddings, K, seed=SEED), seed=SEED)


# --- embedders on an image array ------------------------------------------------------------

def embed_thumbnails(thumbs: np.ndarray, labels: np.ndarray, n_classes: int,
                     embedder: str) -> np.ndarray:
    """The offline embedders' vectors for (n, 32, 32, 3) uint8 thumbnails."""
    from audit.embedders.cnn import combine, held_out_log_probs
    from audit.embedders.pixels import pixel_pca

    if embedder == "imagenet":
        return imagenet_vectors(thumbs)
    appearance = pixel_pca(thumbs, seed=SEED)
    if embedder == "pixels":
        return appearance
    return combine(held_out_log_probs(thumbs, labels, n_classes, FOLDS, SEED), appearance)


def imagenet_vectors(images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The imagenet embedder's vectors of in-memory RGB arrays (same network and transform)."""
    import torch
    from PIL import Image

    from audit.embedders.imagenet import ImagenetNetwork, image_transform

    network = ImagenetNetwork()
    transform = image_transform(network.size)
    return np.concatenate([
        network.features(torch.stack([transform(Image.fromarray(a)) for a in images[i:i + batch]]))
        for i in range(0, len(images), batch)])


# --- the demo -------------------------------------------------------------------------------

DEMO_TRUTH = {
    "label_issue": ("label_flip",), "knn_label": ("label_flip",),
    "training_dynamics": ("label_flip",), "overall": ("label_flip",),
    "outlier": ("outlier",), "near_duplicate": ("near_duplicate",),
    "image_quality": ("quality",), "vl_consistency": ("label_flip", "caption_mismatch"),
}


def truth_ids(truth: dict, kinds: tuple[str, ...]) -> set[str]:
    """Flatten the ids of the planted kinds (lists, dicts of ids, lists of pairs)."""
    ids: set[str] = set()
    for kind in kinds:
        ids |= set(_flatten(truth[kind]))
    return ids


def _flatten(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [i for key, inner in value.items()
                for i in (_flatten(inner) if isinstance(inner, list) else [key])]
    return [i for item in value for i in _flatten(item)]


def demo_scores(out_dir: Path, embedder: str,
                params: dict | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """Generate the demo, ingest it into a fresh store and audit it with the real plan; return
    the scores, what the run recorded about its embedder and the truth."""
    from audit.ingest import ingest
    from audit.demo import generate_demo
    from audit.plan import run_audit
    from audit.settings import load_settings
    from audit.store import Store

    manifest, truth_path = generate_demo(out_dir / "files", seed=SEED)
    settings = load_settings(toml_path=out_dir / "absent.toml",
                             env={"AUDIT_DATA_HOME": str(out_dir / "home")})
    store = Store.from_settings(settings)
    dataset_id = ingest(store, manifest, settings, name="demo")
    config = {"embedder": embedder, "device": "cpu", "k": K, "folds": FOLDS, "seed": SEED,
              "params": params or {}}
    run_id = run_audit(store, settings, dataset_id, config)
    return (*run_scores_and_embedder(store, run_id), json.loads(truth_path.read_text()))


def run_scores_and_embedder(store, run_id: int) -> tuple[pd.DataFrame, dict]:
    """A finished run's scores and what it recorded about its embedder."""
    from audit.store.runs import get_run, scores_frame

    summary = json.loads(get_run(store, run_id)["summary"] or "{}")
    return scores_frame(store, run_id), summary.get("embedder")


def demo_table(embedder: str, params: dict | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and AUROC of every detector that ran on the demo; the run's
    embedder summary (which embedder ran and why) in ``attrs["embedder"]``."""
    with tempfile.TemporaryDirectory() as tmp:
        scores, embedder_summary, truth = demo_scores(Path(tmp), embedder, params)
    return detection_table(scores, truth, embedder_summary)


def detection_table(scores: pd.DataFrame, truth: dict, embedder_summary: dict) -> pd.DataFrame:
    """Precision, recall, F1 and AUROC of each detector of a demo run against the demo's
    truth."""
    rows = []
    for name, frame in scores.groupby("detector", sort=False):
        planted = frame["sample_id"].isin(truth_ids(truth, DEMO_TRUTH[name])).to_numpy()
        rows.append({"detector": name, "planted": int(planted.sum()),
                     **metrics_row(name, frame["is_issue"].to_numpy(bool),
                                   frame["score"].to_numpy(float), planted)})
    order = {name: i for i, name in enumerate(DETECTOR_ORDER)}
    table = pd.DataFrame(rows).drop(columns="method")
    table = table.sort_values("detector", key=lambda c: c.map(order)).reset_index(drop=True)
    table.attrs["embedder"] = embedder_summary
    return table


# --- CIFAR-10N ------------------------------------------------------------------------------

def cifar_embeddings(data: dict, column: str, embedder: str, cache_dir: Path | None) -> np.ndarray:
    """The offline embedding of CIFAR-10N; the CNN learns from ``column`` only (the labels under
    test), pixels use no labels. Cached in ``cache_dir`` when given."""
    key = embedder if embedder in ("pixels", "imagenet") else f"{embedder}_{column}"
    cached = cache_dir / f"cifar10n_{key}.npy" if cache_dir else None
    if cached and cached.exists():
        return np.load(cached)
    labels = data[column].astype(np.int64)
    embeddings = embed_thumbnails(data["images"], labels, len(CIFAR_CLASSES), embedder)
    if cached:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cached, embeddings)
    return embeddings


def datalab_label_issues(labels: np.ndarray, pred_probs: np.ndarray,
                         embeddings: np.ndarray) -> tuple[pd.DataFrame, str]:
    """Datalab.find_issues defaults' label issues, and how they were obtained.

    Datalab needs the optional ``datasets`` package (cleanlab[datalab]). Without it, the same
    numbers come from ``CleanLearning().find_label_issues(labels, pred_probs)``: the exact call
    Datalab's LabelIssueManager makes when pred_probs are given.
    """
    try:
        from cleanlab.datalab.datalab import Datalab
    except ImportError:
        from cleanlab.classification import CleanLearning

        issues = CleanLearning().find_label_issues(labels=labels, pred_probs=pred_probs)
        return issues.rename(columns={"label_quality": "label_score"}), "via LabelIssueManager"
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=embeddings, pred_probs=pred_probs)
    return lab.get_issues("label"), "Datalab"


def cleanlab_rows(labels, pred_probs, embeddings, truth) -> list[dict]:
    """cleanlab on the same arrays: Datalab defaults' label issues and find_label_issues."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues, how = datalab_label_issues(labels, pred_probs, embeddings)
    quality = get_label_quality_scores(labels, pred_probs)
    return [metrics_row(f"cleanlab Datalab label issues ({how})",
                        issues["is_label_issue"].to_numpy(), issues["label_score"].to_numpy(),
                        truth),
            metrics_row("cleanlab find_label_issues", find_label_issues(labels, pred_probs),
                        quality, truth)]


def cifar_table(data: dict, column: str, embeddings: np.ndarray,
                pred_probs: np.ndarray | None = None, params: dict | None = None
                ) -> tuple[pd.DataFrame, dict]:
    """Sieve's label detectors and cleanlab on the same embeddings and pred_probs (cross-fitted
    on ``embeddings`` unless given); also returns overall's run summary."""
    labels = data[column].astype(np.int64)
    truth = labels != data["clean_label"]
    probs = pred_probs if pred_probs is not None else cross_fit(embeddings, labels)
    inputs = array_inputs(embeddings, labels, CIFAR_CLASSES, probs)
    results, summary = run_label_detectors(inputs, params)
    rows = [metrics_row(f"sieve {name}", frame["is_issue"].to_numpy(), frame["score"].to_numpy(),
                        truth) for name, frame in results.items()]
    return pd.DataFrame(rows + cleanlab_rows(labels, probs, embeddings, truth)), summary


def cross_fit(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return cross_fit_probe(embeddings, labels, len(CIFAR_CLASSES), FOLDS, SEED).pred_probs


def run_label_detectors(inputs: DetectorInputs, params: dict | None) -> tuple[dict, dict]:
    """The label detectors then overall, like the plan; overall's summary beside them."""
    params = params or {}
    for name in LABEL_DETECTORS:
        detector = REGISTRY[name]()
        overrides = {**detector.params, **params.get(name, {})}
        inputs.prior_scores[name] = detector.run(inputs, overrides, quiet)
    return inputs.prior_scores, detector.summary or {}


def cifar_configurations(data: dict, column: str, embedders: list[str],
                         cache: Path | None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Configuration name -> (embeddings, supplied pred_probs or None)."""
    configs = {name: (cifar_embeddings(data, column, name, cache), None) for name in embedders}
    if {"imagenet", "pixels"} <= set(embedders):
        strong = cross_fit(configs["imagenet"][0], data[column].astype(np.int64))
        configs[SUPPLIED] = (configs["pixels"][0], strong)
    return configs


def calibration_line(column: str, config: str, table: pd.DataFrame, summary: dict,
                     truth_count: int) -> dict:
    """How overall's automatic flags compare with the truth, and the ranking bar."""
    rows = table.set_index("method")
    overall = rows.loc["sieve overall"]
    singles = rows.loc[[f"sieve {n}" for n in LABEL_DETECTORS if n != "overall"], "auroc"]
    return {"labels": column, "config": config, "true errors": truth_count,
            "estimated": summary.get("estimated_label_errors"),
            "interval 90%": summary.get("interval_90"), "flagged": int(overall["flagged"]),
            "flagged / true": overall["flagged"] / truth_count, "f1": overall["f1"],
            "best f1": overall["best_f1"], "auroc": overall["auroc"],
            "best single auroc": singles.max(), "p@48": overall["p@48"],
            "weights": summary.get("weights")}


# --- main -----------------------------------------------------------------------------------

def print_table(title: str, frame: pd.DataFrame) -> None:
    print(f"\n### {title}\n\n{markdown_table(frame)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", action="append",
                        choices=("auto", "imagenet", "pixels", "cnn"),
                        help="repeatable; default auto, imagenet and pixels (auto is imagenet or "
                             "pixels, settled per dataset: audit/embedders/auto_choice.py)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--cache", type=Path, help="folder to cache CIFAR embeddings in")
    args = parser.parse_args(argv)
    embedders = args.embedder or ["auto", "imagenet", "pixels"]
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    if not args.skip_demo:
        for embedder in embedders:
            table = demo_table(embedder)
            print(f"demo, --embedder {embedder}: {json.dumps(table.attrs['embedder'])}")
            print_table(f"Demo, {embedder} embedder", table)
    if not args.skip_cifar and CIFAR_PATH.exists():
        cifar_report(dict(np.load(CIFAR_PATH)), embedders, args.cache)
    return 0


def cifar_report(data: dict, embedders: list[str], cache: Path | None) -> None:
    if "auto" in embedders:
        print_table("CIFAR-10N: what auto settles on", auto_choice_table(data, cache))
        embedders = [name for name in embedders if name != "auto"] or ["imagenet"]
    lines = []
    for column in CIFAR_COLUMNS:
        truth_count = int((data[column] != data["clean_label"]).sum())
        for config, (embeddings, probs) in cifar_configurations(data, column, embedders,
                                                                cache).items():
            table, summary = cifar_table(data, column, embeddings, probs)
            print_table(f"CIFAR-10N {column} ({truth_count} errors), {config}", table)
            lines.append(calibration_line(column, config, table, summary, truth_count))
    print_table("overall: automatic flags and ranking, every configuration", pd.DataFrame(lines))


def auto_choice_table(data: dict, cache: Path | None) -> pd.DataFrame:
    """``auto``'s comparison (audit/embedders/auto_choice.py) on each label column."""
    from audit.embedders.auto_choice import compare_label_agreement

    imagenet = cifar_embeddings(data, "aggre_label", "imagenet", cache)
    pixels = cifar_embeddings(data, "aggre_label", "pixels", cache)
    rows = []
    for column in CIFAR_COLUMNS:
        agreement = compare_label_agreement(imagenet, pixels, data[column].astype(np.int64), SEED)
        rows.append({"labels": column, **agreement.as_dict("imagenet"),
                     "auto uses": "pixels" if agreement.prefers_pixels else "imagenet"})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    raise SystemExit(main())
