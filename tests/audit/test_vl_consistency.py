"""vl_consistency: hand-made vectors with planted answers, and a tiny random-weight open_clip."""

import json

import numpy as np
import pytest
from PIL import Image

from audit.detectors import REGISTRY
from audit.detectors.vl_consistency import caption_rank_scores, label_prompt_probs
from audit.embedders.clip import load_clip
from tests.audit.detector_inputs import make_inputs, quiet

TINY = "sieve-tiny-vl-test"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class LookupEncoder:
    """A text encoder over a fixed table of unit vectors (the hand-made CLIP)."""

    def __init__(self, table: dict[str, np.ndarray], image_embeddings: np.ndarray):
        self.table, self.image_embeddings, self.logit_scale = table, image_embeddings, 100.0

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def test_prompt_probabilities_follow_similarity():
    probs = label_prompt_probs(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), 10.0)
    assert np.isclose(probs[0, 0], 1 / (1 + np.exp(-10.0)))


def test_caption_rank_counts_worse_fitting_captions_and_half_ties():
    images = np.eye(3, dtype=np.float32)
    captions = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    assert caption_rank_scores(images, captions, 10, seed=0).tolist() == [0.75, 0.5, 1.0]


def test_hand_made_vectors_flag_the_wrong_label_and_the_wrong_caption():
    basis = np.eye(4, dtype=np.float32)
    table = {"a photo of a cat": basis[0], "a photo of a dog": basis[1],
             "my cat": basis[0], "my dog": basis[1], "a car": basis[2]}
    images = basis[[0, 0, 1, 1, 0]]
    labels = np.array([0, 0, 1, 0, 0])             # row 3: a dog labelled cat
    captions = ["my cat", "my cat", "my dog", "my cat", "a car"]   # row 4: wrong caption
    inputs = make_inputs(labels, class_names=["cat", "dog"], captions=captions,
                         clip=LookupEncoder(table, images))
    frame = REGISTRY["vl_consistency"]().run(inputs, {}, quiet)
    assert frame["is_issue"].tolist() == [False, False, False, True, True]
    assert frame.iloc[3]["details"]["suggested_label"] == "dog"
    assert frame.iloc[3]["score"] < 1e-6 and frame.iloc[2]["score"] == 1.0
    assert frame.iloc[0]["details"]["caption_score"] == 0.75      # two equal captions tie
    assert frame.iloc[4]["details"]["caption_score"] == 0.125   # only "my dog" ties
    assert "CLIP sees 'dog'" in frame.iloc[3]["details"]["reason"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import open_clip

    path = tmp_path_factory.mktemp("clip_config") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return load_clip(TINY, None, "cpu")


def test_tiny_open_clip_runs_both_towers_for_real(tiny_clip):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    pixels = tiny_clip.encode_pil(images)
    names = ["red square", "blue circle", "green stripes"]
    true = np.array([0, 1, 2, 0, 1, 2])
    captions = [f"picture {i}: a {names[c]}" for i, c in enumerate(true)]
    given = true.copy()
    given[4] = 0                                   # planted: a blue circle labelled red square
    tiny_clip.image_embeddings = tiny_clip.encode_texts([f"a photo of a {names[c]}" for c in true])
    inputs = make_inputs(given, class_names=names, captions=captions[:5] + [captions[0]],
                         clip=tiny_clip)
    frame = REGISTRY["vl_consistency"]().run(inputs, {}, quiet)
    assert pixels.shape == (6, 32) and np.allclose(np.linalg.norm(pixels, axis=1), 1, atol=1e-4)
    label_scores = [d["label_score"] for d in frame["details"]]
    assert np.argmin(label_scores) == 4 and sorted(label_scores)[1] == 1.0
    assert frame.iloc[4]["details"]["suggested_label"] == "blue circle"
    assert frame["score"].between(0, 1).all() and frame["score"].idxmin() in (4, 5)
