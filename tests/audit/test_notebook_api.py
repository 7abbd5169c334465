"""The notebook API, run the way a notebook runs it: a fresh Python process in the notebook's
folder imports the installed package, audits a DataFrame read from a CSV of real PNGs (and a
``datasets.Dataset`` of the same images), reads the scores back, opens the dashboard and stops
it. The audits go through the store, the job queue and a background worker, like the CLI's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from audit.ingest import ingest
from audit.errors import InputError
from audit.notebook import audit_dataframe
from tests.conftest import PROJECT_ROOT

APP = PROJECT_ROOT / "dashboard" / "app.py"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
PLANTED = "images/red/5.png"        # a red image labelled blue
DETECTORS = ["knn_label", "label_issue", "outlier"]

NOTEBOOK = """
import json, sys, urllib.request
import datasets
import pandas as pd
from audit import audit_dataframe, audit_hf_dataset

options = dict(embedder="pixels", probe="logistic", folds=3, k=5, detectors=%(detectors)r)
df = pd.read_csv("labels.csv")
result = audit_dataframe(df, path_column="file", label_column="class", **options)
scores = result.scores()
scores.to_parquet("scores.parquet")
again = audit_dataframe(df, path_column="file", label_column="class", **options)

names = sorted(set(df["class"]))
ds = datasets.Dataset.from_dict(
    {"image": df["file"].tolist(), "label": [names.index(c) for c in df["class"]]},
    features=datasets.Features({"image": datasets.Image(),
                                "label": datasets.ClassLabel(names=names)}))
from_hf = audit_hf_dataset(ds, **options).scores()
from_hf.to_parquet("hf_scores.parquet")

dashboard = result.open_dashboard()
with urllib.request.urlopen(str(dashboard), timeout=60) as answer:
    status = answer.status
dashboard.stop()
print(json.dumps({"url": str(dashboard), "status": status, "stopped": dashboard.process.poll(),
                  "first": [result.dataset_id, result.run_id],
                  "again": [again.dataset_id, again.run_id]}))
"""


def write_images(folder: Path) -> pd.DataFrame:
    """Twelve noisy PNGs per colour, listed in shuffled order with one planted mislabel."""
    rng = np.random.default_rng(0)
    rows = []
    for label, colour in COLOURS.items():
        (folder / "images" / label).mkdir(parents=True)
        for index in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (16, 16, 3)), 0, 255)
            path = f"images/{label}/{index}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(folder / path)
            rows.append({"file": path, "class": "blue" if path == PLANTED else label})
    return pd.DataFrame(rows).sample(frac=1, random_state=1).reset_index(drop=True)


def _notebook_environment() -> dict:
    """A notebook's environment: no PYTHONPATH and no AUDIT_* variable, so the installed package
    is imported and the data home is the default, ./data of the notebook's folder."""
    return {key: value for key, value in os.environ.items()
            if key != "PYTHONPATH" and not key.startswith("AUDIT_")}


@pytest.mark.slow
def test_a_notebook_audits_a_dataframe_and_a_dataset_and_opens_the_dashboard(
        data_home, tmp_path, monkeypatch) -> None:
    assert data_home == tmp_path / "data"   # the notebook's default data home, workers killed
    frame = write_images(tmp_path)
    frame.to_csv(tmp_path / "labels.csv", index=False)

    run = subprocess.run([sys.executable, "-c", NOTEBOOK % {"detectors": DETECTORS}],
                         capture_output=True, text=True, cwd=tmp_path,
                         env=_notebook_environment(), timeout=900)

    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert scores.columns.tolist() == ["sample_id", "path", "label", "split", "predicted_label"] \
        + [f"{d}_{what}" for d in DETECTORS for what in ("score", "is_issue")]
    assert scores["path"].tolist() == [str((tmp_path / p).resolve()) for p in frame["file"]]
    assert scores["label"].tolist() == frame["class"].tolist()
    planted = scores.index[scores["path"].str.endswith(PLANTED)][0]
    assert scores.loc[planted, "predicted_label"] == "red"
    assert scores.loc[planted, "label_issue_is_issue"]
    assert scores["label_issue_score"].idxmin() == planted
    assert scores["label_issue_score"].between(0, 1).all()

    again_dataset, again_run = report["again"]
    assert again_dataset == report["first"][0] and again_run > report["first"][1]  # reused

    from_hf = pd.read_parquet(tmp_path / "hf_scores.parquet")
    assert from_hf["sample_id"].tolist() == [f"train/{i}" for i in range(len(frame))]
    assert from_hf["label"].tolist() == frame["class"].tolist()   # ClassLabel names
    assert from_hf.loc[planted, "label_issue_is_issue"]

    assert report["status"] == 200 and report["stopped"] is not None
    _assert_the_dashboard_opens_on(report["url"], data_home, monkeypatch)


def _assert_the_dashboard_opens_on(url: str, data_home: Path, monkeypatch) -> None:
    """The URL names the first audit's dataset and run (not the newest run): the app picks them."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
    monkeypatch.setenv("AUDIT_DATA_HOME", str(data_home))
    monkeypatch.setenv("AUDIT_CONFIG", str(data_home / "absent.toml"))
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.query_params.update(query)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="dataset_id").value == int(query["dataset"])
    assert app.selectbox(key=f"run_id_{query['dataset']}").value == int(query["run"]) == 1


def test_a_missing_column_names_the_columns_and_the_argument(data_home, tmp_path) -> None:
    frame = pd.DataFrame({"file": ["a.png"], "class": ["cat"]})

    with pytest.raises(InputError, match=r"the DataFrame has no column\(s\) \['path', 'label'\]; "
                       r"its columns are \['file', 'class'\]\. Name yours with path_column="):
        audit_dataframe(frame, data_home=data_home)


def test_a_blank_label_is_refused_like_a_manifest_row(data_home, tmp_path) -> None:
    frame = write_images(tmp_path).head(3)
    frame.loc[1, "class"] = None

    with pytest.raises(InputError, match=r"the DataFrame: column 'label' is blank in row\(s\) "
                       r"\[2\]"):
        audit_dataframe(frame, path_column="file", label_column="class", root=tmp_path,
                        data_home=data_home)


def test_a_name_taken_by_other_images_is_refused(settings, store, data_home, tmp_path) -> None:
    frame = write_images(tmp_path)
    ingest(store, tmp_path / "images", settings, name="pets")   # a folder of the same images
    other = frame.assign(**{"class": "red"})                      # ... with other labels

    with pytest.raises(InputError, match="a dataset named 'pets' already exists with other "
                       "images or labels; pass another name="):
        audit_dataframe(other, path_column="file", label_column="class", root=tmp_path,
                        name="pets", data_home=data_home)


def test_import_audit_stays_light_and_names_the_notebook_api() -> None:
    script = ("import sys, audit\n"
              "light = not {'jobs', 'pandas', 'duckdb'} & {m.split('.')[0] for m in sys.modules}\n"
              "from audit import audit_dataframe, audit_hf_dataset, AuditResult\n"
              "print(light, audit_dataframe.__module__)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=_notebook_environment(), cwd=PROJECT_ROOT, timeout=120)
    assert out.stdout.split() == ["True", "audit.notebook"], out.stderr
