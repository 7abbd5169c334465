"""The demo dataset: scikit-learn's 1,797 handwritten digits with planted, recorded problems.

``generate_demo(out_dir, seed)`` writes PNG files, ``manifest.csv`` (id, path, label, caption,
split) and, separately, ``truth.json`` with what was planted. The truth is for benchmarks and
tests only; it never goes into the store. The same seed gives the same files.

Planted (disjoint sets of samples):
- label_flip: about 5% of the digits get a different label (and a caption that agrees with it);
- outlier: about 1% extra images that are not digits (shapes, stripes, noise), with a digit label;
- near_duplicate: pairs made by copying a digit with slight noise and 8% less ink (a re-scan), some pairs
  spanning train and test (listed again under ``leak``);
- quality: blurred, dark and tiny (8 x 8) images; the non-digits drawn in two flat colours
  (shapes, stripes) are recorded as ``low_information`` too: a two-colour image carries about
  one bit of grey-level entropy, which is what that check measures (cleanvision's definition);
- caption_mismatch: captions naming another digit than the image and its label;
- unreadable: a truncated PNG and a file that is not an image.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from audit.settings import Settings
from audit.store import Store

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SIZE = 32
TEST_FRACTION = 0.2
FLIP_FRACTION = 0.05
OUTLIER_FRACTION = 0.01
DUPLICATE_PAIRS = 12
LEAKING_PAIRS = 5
QUALITY_EACH = 6
CAPTION_MISMATCHES = 15
DEMO_NAME = "demo"
OUTLIER_SHAPES = ("disc", "bar", "stripes", "noise")   # all but noise: two flat colours
INK = np.array([30, 40, 120], dtype=np.float64)      # blue-black ink
PAPER = np.array([245, 240, 225], dtype=np.float64)  # cream paper


def generate_demo(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the demo under ``out_dir``; return (manifest path, truth path)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows, truth = _plant(digits.images, digits.target, rng)
    for row in rows:
        _write_image(out_dir / row["path"], row.pop("pixels"), row.pop("kind"))
    manifest = out_dir / "manifest.csv"
    _write_manifest(manifest, rows)
    truth_path = out_dir / "truth.json"
    truth_path.write_text(json.dumps({"seed": seed, **truth}, indent=1, sort_keys=True))
    return manifest, truth_path


def _plant(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator):
    n = len(images)
    order = rng.permutation(n)
    flips, mismatches, blurry, dark, tiny, duplicated = _disjoint_picks(order, n)
    rows = [_digit_row(i, images[i], int(targets[i]), rng) for i in range(n)]
    truth = {"label_flip": {}, "caption_mismatch": [], "outlier": [], "near_duplicate": [],
             "leak": [], "quality": {"blurry": [], "dark": [], "tiny": [], "low_information": []},
             "unreadable": []}
    _flip_labels(rows, flips, rng, truth)
    _mismatch_captions(rows, mismatches, rng, truth)
    for kind, picks in (("blurry", blurry), ("dark", dark), ("tiny", tiny)):
        for i in picks:
            rows[i]["kind"] = kind
            truth["quality"][kind].append(rows[i]["id"])
    rows += _duplicates(rows, duplicated, rng, truth)
    rows += _outliers(int(round(OUTLIER_FRACTION * n)), rng, truth)
    rows += _unreadable(rng, truth)
    return rows, truth


def _disjoint_picks(order: np.ndarray, n: int):
    sizes = [int(round(FLIP_FRACTION * n)), CAPTION_MISMATCHES, QUALITY_EACH, QUALITY_EACH,
             QUALITY_EACH, DUPLICATE_PAIRS]
    bounds = np.cumsum([0] + sizes)
    return [order[bounds[i]:bounds[i + 1]].tolist() for i in range(len(sizes))]


def _digit_row(index: int, image: np.ndarray, target: int, rng: np.random.Generator) -> dict:
    split = "test" if rng.random() < TEST_FRACTION else "train"
    sample_id = f"d{index:04d}"
    return {"id": sample_id, "path": f"images/{split}/{sample_id}.png", "label": CLASS_NAMES[target],
            "caption": _caption(target, rng), "split": split, "pixels": image / 16.0,
            "kind": "digit", "true": target}


def _caption(target: int, rng: np.random.Generator) -> str:
    style = rng.choice(["a handwritten {}", "the digit {} written by hand", "a scanned {}"])
    return str(style).format(CLASS_NAMES[target])


def _other_class(target: int, rng: np.random.Generator) -> int:
    return int((target + rng.integers(1, len(CLASS_NAMES))) % len(CLASS_NAMES))


def _flip_labels(rows: list[dict], picks: list[int], rng, truth: dict) -> None:
    for i in picks:
        given = _other_class(rows[i]["true"], rng)
        rows[i]["label"] = CLASS_NAMES[given]
        rows[i]["caption"] = _caption(given, rng)
        truth["label_flip"][rows[i]["id"]] = {"true_label": CLASS_NAMES[rows[i]["true"]],
                                              "given_label": CLASS_NAMES[given]}


def _mismatch_captions(rows: list[dict], picks: list[int], rng, truth: dict) -> None:
    for i in picks:
        rows[i]["caption"] = _caption(_other_class(rows[i]["true"], rng), rng)
        truth["caption_mismatch"].append(rows[i]["id"])


def _duplicates(rows: list[dict], picks: list[int], rng, truth: dict) -> list[dict]:
    copies = []
    for number, i in enumerate(picks):
        source = rows[i]
        split = _copy_split(source["split"], number)
        noisy = np.clip(source["pixels"] * 0.92 + rng.normal(0, 0.03, (8, 8)), 0, 1)
        copy_id = f"{source['id']}_copy"
        copies.append({**source, "id": copy_id, "path": f"images/{split}/{copy_id}.png",
                       "split": split, "pixels": noisy, "kind": "digit"})
        truth["near_duplicate"].append([source["id"], copy_id])
        if split != source["split"]:
            truth["leak"].append([source["id"], copy_id])
    return copies


def _copy_split(source_split: str, number: int) -> str:
    if number < LEAKING_PAIRS:
        return "train" if source_split == "test" else "test"
    return source_split


def _outliers(count: int, rng: np.random.Generator, truth: dict) -> list[dict]:
    rows = []
    for number in range(count):
        sample_id = f"x{number:03d}"
        split = "test" if rng.random() < TEST_FRACTION else "train"
        label = int(rng.integers(len(CLASS_NAMES)))
        rows.append({"id": sample_id, "path": f"images/{split}/{sample_id}.png",
                     "label": CLASS_NAMES[label], "caption": _caption(label, rng), "split": split,
                     "pixels": number, "kind": "outlier", "true": None})
        truth["outlier"].append(sample_id)
        if OUTLIER_SHAPES[number % len(OUTLIER_SHAPES)] != "noise":
            truth["quality"]["low_information"].append(sample_id)
    return rows


def _unreadable(rng: np.random.Generator, truth: dict) -> list[dict]:
    rows = []
    for sample_id, kind in (("bad_truncated", "truncated"), ("bad_notimage", "notimage")):
        label = int(rng.integers(len(CLASS_NAMES)))
        rows.append({"id": sample_id, "path": f"images/train/{sample_id}.png",
                     "label": CLASS_NAMES[label], "caption": _caption(label, rng),
                     "split": "train", "pixels": None, "kind": kind, "true": None})
        truth["unreadable"].append(sample_id)
    return rows


# --- pixels ---------------------------------------------------------------------------------

def _write_image(path: Path, pixels, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("truncated", "notimage"):
        _write_broken(path, kind)
        return
    image = _outlier_image(pixels) if kind == "outlier" else _ink_on_paper(pixels)
    image = _degrade(image, kind)
    image.save(path)


def _ink_on_paper(intensity: np.ndarray) -> Image.Image:
    rgb = PAPER + intensity[..., None] * (INK - PAPER)
    small = Image.fromarray(rgb.astype(np.uint8), mode="RGB")
    return small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)


def _degrade(image: Image.Image, kind: str) -> Image.Image:
    if kind == "blurry":
        return image.filter(ImageFilter.GaussianBlur(radius=2.5))
    if kind == "dark":
        return Image.fromarray((np.asarray(image) * 0.12).astype(np.uint8), mode="RGB")
    if kind == "tiny":
        return image.resize((8, 8), Image.Resampling.BILINEAR)
    return image


def _outlier_image(number: int) -> Image.Image:
    rng = np.random.default_rng(1000 + number)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    background = tuple(int(c) for c in rng.integers(0, 256, 3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    shape = OUTLIER_SHAPES[number % len(OUTLIER_SHAPES)]
    if shape == "disc":
        draw.ellipse([4, 4, 28, 28], fill=colour)
    elif shape == "bar":
        draw.rectangle([6, 10, 26, 22], fill=colour)
    elif shape == "stripes":
        for x in range(0, IMAGE_SIZE, 6):
            draw.rectangle([x, 0, x + 2, IMAGE_SIZE], fill=colour)
    else:
        noise = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        image = Image.fromarray(noise, mode="RGB")
    return image


def _write_broken(path: Path, kind: str) -> None:
    if kind == "notimage":
        path.write_text("this is a text file with an image's name\n")
        return
    full = path.with_suffix(".full.png")
    _ink_on_paper(np.eye(8)).save(full)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])


def _write_manifest(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "path", "label", "caption", "split"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# --- into the store -------------------------------------------------------------------------

def ensure_demo_dataset(store: Store, settings: Settings, seed: int = 0,
                        progress: Callable[[float, str], None] | None = None) -> int:
    """The demo's dataset id: generated and ingested on first use, reused after."""
    from audit.ingest import ingest
    from audit.errors import NotFoundError
    from audit.store.datasets import get_dataset

    try:
        return get_dataset(store, DEMO_NAME).id
    except NotFoundError:
        pass
    manifest, _ = generate_demo(settings.demo_dir, seed)
    return ingest(store, manifest, settings, name=DEMO_NAME, progress=progress)
