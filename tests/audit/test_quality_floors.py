"""Detection-quality floors, with margin, on the demo's planted problems and on CIFAR-10N.

The demo goes through the real product (ingest, ``run_audit`` with the offline pixel embedder);
the measured figures and the commands are in docs/benchmarks.md ("Detection quality").
"""


import numpy as np
import pytest

from bench.bench_quality import CIFAR_PATH, cifar_embeddings, cifar_table, demo_table

pytestmark = pytest.mark.slow

# detector -> (minimum F1, minimum AUROC) with the pixels embedder; measured values in the docs.
DEMO_FLOORS = {"label_issue": (0.7, 0.95), "knn_label": (0.7, 0.95),
               "training_dynamics": (0.75, 0.95), "overall": (0.85, 0.98),
               "outlier": (0.8, 0.97), "near_duplicate": (0.8, 0.97),
               "image_quality": (0.6, 0.95)}


@pytest.fixture(scope="module")
def demo() -> dict:
    table = demo_table("pixels")
    return {row.detector: row for row in table.itertuples()}


@pytest.mark.parametrize("detector", sorted(DEMO_FLOORS))
def test_demo_floor(demo, detector):
    min_f1, min_auroc = DEMO_FLOORS[detector]
    row = demo[detector]
    assert row.f1 >= min_f1 and row.auroc >= min_auroc, row


def test_demo_overall_beats_each_label_detector(demo):
    assert demo["overall"].f1 > max(demo[n].f1 for n in ("label_issue", "knn_label"))
    assert demo["overall"].recall >= 0.9


@pytest.fixture(scope="module")
def cifar_aggre():
    if not CIFAR_PATH.exists():
        pytest.skip(f"{CIFAR_PATH} is absent (a benchmark data set, not shipped with Sieve)")
    data = dict(np.load(CIFAR_PATH))
    embeddings = cifar_embeddings(data, "aggre_label", "pixels", cache_dir=None)
    table = cifar_table(data, "aggre_label", embeddings)
    return {row["method"]: row for row in table.to_dict("records")}


def test_cifar_overall_beats_datalab_label_issues(cifar_aggre):
    datalab = next(v for k, v in cifar_aggre.items() if k.startswith("cleanlab Datalab"))
    assert cifar_aggre["sieve overall"]["f1"] > datalab["f1"] + 0.02


def test_cifar_no_detector_is_worse_than_find_label_issues(cifar_aggre):
    baseline = cifar_aggre["cleanlab find_label_issues"]["f1"]
    assert np.isclose(cifar_aggre["sieve label_issue"]["f1"], baseline)
    assert cifar_aggre["sieve knn_label"]["f1"] >= baseline
    assert cifar_aggre["sieve training_dynamics"]["f1"] >= baseline
