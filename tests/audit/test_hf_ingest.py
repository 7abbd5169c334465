"""Hugging Face datasets saved on disk, ingested through ``python -m audit ingest``: a
``save_to_disk`` DatasetDict written by the ``datasets`` library and a Parquet file of image
bytes written with pyarrow in the layout ``datasets`` writes (checked by loading it back with
``datasets``). Bad rows are recorded, bad columns refused with the fix; and the installed
``sieve`` command works from any folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from audit.dataset_lifecycle import delete_dataset
from audit.ingest import ingest
from audit.errors import InputError
from audit.store.datasets import get_dataset, samples_frame
from tests.conftest import PROJECT_ROOT

CLASSES = ["cat", "dog"]
NOT_AN_IMAGE = b"these bytes are not an image"


def png_bytes(seed: int, size: int = 12) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def hf_features(label: str = "label") -> datasets.Features:
    return datasets.Features({"image": datasets.Image(),
                              label: datasets.ClassLabel(names=CLASSES)})


def hf_dataset(images: list[bytes], labels: list[int], label: str = "label") -> datasets.Dataset:
    cells = [{"bytes": data, "path": f"{i}.png"} for i, data in enumerate(images)]
    return datasets.Dataset.from_dict({"image": cells, label: labels}, features=hf_features(label))


def _cli(env: dict, *args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_cli_ingests_a_saved_datasetdict_with_class_names_and_a_bad_row(
        subprocess_env, store, data_home, tmp_path) -> None:
    train = [png_bytes(i) for i in range(6)]
    train[4] = NOT_AN_IMAGE
    val = [png_bytes(10 + i) for i in range(2)]
    folder = tmp_path / "pets_hf"
    datasets.DatasetDict({
        "train": hf_dataset(train, [0, 0, 0, 1, 1, 1]),
        "validation": hf_dataset(val, [1, 0]),
    }).save_to_disk(str(folder))

    result = _cli(subprocess_env, "ingest", str(folder), "--name", "pets")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == \
        "ingested 'pets' (id 1): 8 samples, 2 classes, 1 unreadable"
    assert ("train row 4, column 'image': the bytes are not an image (unrecognised format); "
            "fix or drop that row and save the dataset again") in result.stderr
    samples = samples_frame(store, 1)
    assert samples["sample_id"].tolist() == [f"train/{i}" for i in range(6)] + \
        ["validation/0", "validation/1"]
    assert samples["split"].tolist() == ["train"] * 6 + ["val"] * 2
    assert samples["label"].tolist() == ["cat"] * 3 + ["dog"] * 3 + ["dog", "cat"]
    assert samples["load_error"].notna().tolist() == [False] * 4 + [True] + [False] * 3
    record = get_dataset(store, 1)
    assert (record.kind, record.source) == ("huggingface", str(folder.resolve()))
    root = Path(record.root)
    assert root == (data_home / "hf_images").resolve()
    for relative, original in zip(samples["path"], train + val):
        assert (root / relative).read_bytes() == original   # the row's own bytes, as a file
    assert samples["width"].tolist()[:4] == [12] * 4


def write_hf_parquet(path: Path, cells: list[dict | None], labels: list[int]) -> Path:
    """What ``Dataset.to_parquet`` writes: an image struct column, an int label column and the
    features (ClassLabel names) in the schema's ``huggingface`` metadata."""
    features = {"image": {"_type": "Image"}, "label": {"names": CLASSES, "_type": "ClassLabel"}}
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("label", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(pa.table({"image": cells, "label": labels}, schema=schema), path)
    return path


def test_cli_ingests_a_parquet_file_of_image_bytes(subprocess_env, store, data_home,
                                                   tmp_path) -> None:
    same = png_bytes(1)
    cells = [{"bytes": png_bytes(0), "path": "a.png"}, {"bytes": same, "path": "b.png"},
             {"bytes": None, "path": "photos/2.jpg"}, {"bytes": same, "path": "c.png"}]
    parquet = write_hf_parquet(tmp_path / "validation-00000-of-00001.parquet", cells,
                               [0, 1, 1, 0])
    loaded = datasets.Dataset.from_parquet(str(parquet))   # the layout datasets itself reads
    assert loaded.features == hf_features() and loaded[1]["label"] == 1

    result = _cli(subprocess_env, "ingest", str(parquet), "--name", "from-parquet")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == \
        "ingested 'from-parquet' (id 1): 4 samples, 2 classes, 1 unreadable"
    samples = samples_frame(store, 1)
    assert samples["split"].tolist() == ["val"] * 4          # from the file's name
    assert samples["label"].tolist() == ["cat", "dog", "dog", "cat"]
    assert samples["load_error"][2] == (
        "validation row 2, column 'image': no image bytes (only the path 'photos/2.jpg'); save "
        "the dataset with its images embedded (save_to_disk and to_parquet embed local image "
        "files) and ingest it again")
    assert samples["path"][1] == samples["path"][3]          # the same bytes, written once
    assert samples["sha256"][1] == samples["sha256"][3]


def test_deleting_a_dataset_removes_the_image_copies_no_other_dataset_uses(
        settings, store, data_home, tmp_path) -> None:
    shared, own = png_bytes(1), png_bytes(2)
    first = write_hf_parquet(tmp_path / "train-1.parquet",
                             [{"bytes": shared, "path": "a.png"}, {"bytes": own, "path": "b.png"}],
                             [0, 1])
    second = write_hf_parquet(tmp_path / "train-2.parquet",
                              [{"bytes": shared, "path": "a.png"}], [0])
    gone = ingest(store, first, settings, name="first")
    ingest(store, second, settings, name="second")
    copies = data_home / "hf_images"
    assert len(list(copies.rglob("*.png"))) == 2

    delete_dataset(store, settings, get_dataset(store, gone))

    left = [path.read_bytes() for path in copies.rglob("*.png")]
    assert left == [shared]                          # the second dataset still reads it
    assert first.is_file() and second.is_file()      # the user's files stay


def test_a_missing_image_column_is_refused_in_one_line_naming_the_fix(subprocess_env,
                                                                       tmp_path) -> None:
    folder = tmp_path / "renamed"
    hf_dataset([png_bytes(0), png_bytes(1)], [0, 1]).rename_column("image", "img") \
        .save_to_disk(str(folder))

    refused = _cli(subprocess_env, "ingest", str(folder))
    ingested = _cli(subprocess_env, "ingest", str(folder), "--image-column", "img")

    data_file = folder.resolve() / "data-00000-of-00001.arrow"
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (      # after the ingest job's progress
        f"error: {data_file}: no image column 'image'; its columns are ['img', 'label']. Name "
        "the image column with --image-column (image_column= in Python), e.g. 'img'")
    assert refused.stderr.count("error:") == 1
    assert ingested.returncode == 0, ingested.stderr


def test_a_missing_label_column_names_the_classlabel_columns(settings, store, tmp_path) -> None:
    folder = tmp_path / "fine"
    hf_dataset([png_bytes(0), png_bytes(1)], [0, 1], label="fine_label").save_to_disk(str(folder))

    with pytest.raises(InputError, match=r"no label column 'label'; its columns are \['image', "
                       r"'fine_label'\]\. Name the label column with --label-column "
                       r"\(label_column= in Python\), e\.g\. 'fine_label'"):
        ingest(store, folder, settings)


def test_an_unlabelled_row_refuses_the_dataset_naming_the_row(settings, store, tmp_path) -> None:
    folder = tmp_path / "unlabelled"
    hf_dataset([png_bytes(0), png_bytes(1)], [0, -1]).save_to_disk(str(folder))

    with pytest.raises(InputError, match=r"train row 1 has no label in column 'label' \(-1\); "
                       r"drop the unlabelled rows before saving \(ds\.filter\(lambda row: "
                       r"row\['label'\] != -1\)\)"):
        ingest(store, folder, settings)


def test_an_unknown_split_is_refused(settings, store, tmp_path) -> None:
    folder = tmp_path / "imdb_like"
    datasets.DatasetDict({"unsupervised": hf_dataset([png_bytes(0)], [0])}).save_to_disk(
        str(folder))

    with pytest.raises(InputError, match="split 'unsupervised' is not train, validation or test"):
        ingest(store, folder, settings)


def test_a_data_file_outside_the_folder_is_refused(settings, store, tmp_path) -> None:
    folder = tmp_path / "escaping"
    hf_dataset([png_bytes(0)], [0]).save_to_disk(str(folder))
    outside = tmp_path / "outside.arrow"
    (folder / "data-00000-of-00001.arrow").rename(outside)
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": "../outside.arrow"}]
    (folder / "state.json").write_text(json.dumps(state))

    with pytest.raises(InputError, match="'../outside.arrow' leads outside the dataset folder"):
        ingest(store, folder, settings)


def _without_sieve_environment() -> dict:
    """This environment without PYTHONPATH or any AUDIT_* variable: only the installed package
    can be imported, and settings take their defaults."""
    return {key: value for key, value in os.environ.items()
            if key != "PYTHONPATH" and not key.startswith("AUDIT_")}


def test_the_sieve_command_works_from_any_folder_with_its_data_home_there(tmp_path) -> None:
    sieve = Path(sys.executable).parent / "sieve"
    assert sieve.is_file(), "no .venv/bin/sieve: run `make install` (pip install -e .)"
    parquet = write_hf_parquet(tmp_path / "train.parquet",
                               [{"bytes": png_bytes(0), "path": None}], [1])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _without_sieve_environment()

    def sieve_in_elsewhere(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(sieve), *args], capture_output=True, text=True, env=env,
                              cwd=elsewhere, timeout=300)

    helped = sieve_in_elsewhere("--help")
    ingested = sieve_in_elsewhere("ingest", str(parquet))
    listed = sieve_in_elsewhere("datasets")

    assert helped.returncode == 0 and helped.stdout.startswith("usage: sieve "), helped.stderr
    for command in ("ingest", "datasets", "run", "jobs", "export", "serve", "demo"):
        assert command in helped.stdout
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("ingested 'train' (id 1): 1 samples, 1 classes")
    assert (elsewhere / "data" / "audit.duckdb").is_file()   # the folder it runs in: ./data
    assert len(list((elsewhere / "data" / "hf_images").rglob("*.png"))) == 1
    assert listed.stdout.splitlines()[1].split()[:2] == ["1", "train"]
