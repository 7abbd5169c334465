"""A synthetic dataset and one succeeded run, generated inside DuckDB for the benchmarks."""

from __future__ import annotations

from audit.store import Store


def load_synthetic_run(store: Store, n_samples: int, detectors: list[str], seed: int = 0,
                       classes: int = 100, root: str = "/nonexistent") -> tuple[int, int]:
    """Bulk-generate a dataset of ``n_samples`` rows and one succeeded run with a score from
    every detector and per-sample run facts, inside DuckDB, for benchmarks. Sample paths are
    ``images/class_<k>.png`` under ``root``: one picture per class, which the caller may
    write. Returns (dataset_id, run_id)."""
    with store.transaction() as con:
        dataset_id = con.execute(
            "INSERT INTO datasets (name, source, kind, root) "
            "VALUES (?, 'synthetic', 'manifest', ?) RETURNING id",
            [f"synthetic-{n_samples}-{seed}", root]).fetchone()[0]
        con.execute(_SYNTHETIC_SAMPLES, {"dataset_id": dataset_id, "n": n_samples,
                                         "classes": classes})
    return int(dataset_id), add_synthetic_run(store, dataset_id, n_samples, detectors, seed,
                                              classes)


def add_synthetic_run(store: Store, dataset_id: int, n_samples: int, detectors: list[str],
                      seed: int, classes: int = 100) -> int:
    """One more succeeded run of a synthetic dataset (``load_synthetic_run``'s), its scores
    drawn with ``seed``: a newly finished re-audit. Returns its id."""
    with store.transaction() as con:
        con.execute("SELECT setseed(?)", [(seed % 1000) / 1000.0])
        run_id = con.execute(
            "INSERT INTO runs (dataset_id, status, config, finished_at) "
            "VALUES (?, 'succeeded', '{}', current_timestamp) RETURNING id", [dataset_id]
        ).fetchone()[0]
        con.execute(_SYNTHETIC_SCORES, {"run_id": run_id, "n": n_samples,
                                        "detectors": detectors, "classes": classes})
        con.execute(_SYNTHETIC_RUN_SAMPLES, {"run_id": run_id, "n": n_samples, "classes": classes})
    return int(run_id)


_SYNTHETIC_SAMPLES = """
INSERT INTO samples (dataset_id, sample_id, row_index, split, path, label, caption, width,
    height, file_size, sha256)
SELECT $dataset_id, 's' || lpad(i::VARCHAR, 7, '0'), i,
    CASE WHEN i % 5 = 0 THEN 'test' ELSE 'train' END,
    'images/class_' || (i % $classes) || '.png', 'class_' || (i % $classes),
    'a photo of class ' || (i % $classes), 32, 32, 1000, sha256(i::VARCHAR)
FROM range($n) t(i)
"""

_SYNTHETIC_SCORES = """
INSERT INTO scores (run_id, sample_id, detector, score, is_issue, details)
SELECT $run_id, 's' || lpad(i::VARCHAR, 7, '0'), detector, u, u < 0.03,
    CASE WHEN u < 0.03 THEN '{"reason": "synthetic", "suggested_label": "class_'
        || ((i + 1) % $classes) || '"}' ELSE '{"reason": "synthetic"}' END
FROM (
    SELECT d.detector, t.i, random() AS u
    FROM (SELECT unnest($detectors::VARCHAR[]) AS detector) d CROSS JOIN range($n) t(i)
)
ORDER BY detector, i
"""

_SYNTHETIC_RUN_SAMPLES = """
INSERT INTO run_samples (run_id, sample_id, fold, predicted_label, predicted_confidence,
    map_x, map_y)
SELECT $run_id, 's' || lpad(i::VARCHAR, 7, '0'), i % 5,
    'class_' || (CASE WHEN i % 50 = 0 THEN i + 1 ELSE i END % $classes), 0.5 + random() / 2,
    (i % $classes) + random(), (i % 7) + random()
FROM range($n) t(i)
"""
