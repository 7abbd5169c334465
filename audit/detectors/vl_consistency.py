"""vl_consistency: does a pretrained CLIP see in the image what its label and caption say?

Two parts (VDC's visual-linguistic inconsistency, with CLIP instead of an MLLM):

- label: the image against the prompts ``"a photo of a {label}"`` of every class; softmax with
  CLIP's logit scale gives a probability per class. ``label_score = p(given) / p(top)`` (1 when
  the given label is CLIP's favourite). Issue when ``label_score < label_threshold``.
- caption (when the dataset has captions): the image's similarity with its own caption ranked
  against ``caption_sample`` other captions of the dataset (ties count half).
  ``caption_score`` = the fraction of other captions that fit the image worse. Issue when
  ``caption_score < caption_threshold``.

Score = the smaller of the two. The CLIP object needs ``encode_texts(list[str]) -> (m, d)``
L2-normalised float32; image embeddings are ``clip.image_embeddings`` when it has them, else
``inputs.embeddings`` (the run's embeddings ARE CLIP's when the embedder is clip).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from audit.detectors.base import Detector, DetectorInputs, Progress, register, result_frame
from audit.detectors.label_issue import top_classes
from audit.errors import ConfigError

PROMPT = "a photo of a {label}"
DEFAULT_LOGIT_SCALE = 100.0
ROW_CHUNK = 65536


class TextEncoder(Protocol):
    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def label_prompt_probs(image_emb: np.ndarray, prompt_emb: np.ndarray,
                       logit_scale: float = DEFAULT_LOGIT_SCALE) -> np.ndarray:
    """(n, K) softmax over the label prompts of the scaled cosine similarities."""
    logits = logit_scale * (image_emb @ prompt_emb.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def caption_rank_scores(image_emb: np.ndarray, caption_emb: np.ndarray, sample_size: int,
                        seed: int) -> np.ndarray:
    """Fraction of other captions (a random sample) less similar to each image than its own."""
    n = len(image_emb)
    others = np.random.default_rng(seed).choice(n, size=min(sample_size, n), replace=False)
    return np.concatenate([_rank_rows(image_emb, caption_emb, others, start)
                           for start in range(0, n, ROW_CHUNK)])


def _rank_rows(image_emb, caption_emb, others, start: int) -> np.ndarray:
    rows = np.arange(start, min(start + ROW_CHUNK, len(image_emb)))
    own = np.einsum("ij,ij->i", image_emb[rows], caption_emb[rows])[:, None]
    similar = image_emb[rows] @ caption_emb[others].T
    valid = others[None, :] != rows[:, None]
    wins = ((similar < own) + 0.5 * (similar == own)) * valid
    return wins.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


def encode_unique(encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    """Encode each distinct text once; rows follow ``texts``."""
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return np.asarray(encoder.encode_texts(list(unique)), dtype=np.float32)[inverse]


def vl_details(probs, label_score, caption_score, labels, class_names) -> list[dict]:
    best = probs.argmax(axis=1)
    return [_one_detail(probs[i], int(labels[i]), int(best[i]), label_score[i],
                        None if caption_score is None else caption_score[i], class_names)
            for i in range(len(labels))]


def _one_detail(probs, given, best, label_score, caption_score, class_names) -> dict:
    detail = {"reason": _reason(probs, given, best, caption_score, class_names),
              "suggested_label": class_names[best],
              "suggested_confidence": round(float(probs[best]), 4),
              "top_classes": top_classes(probs, class_names),
              "label_score": round(float(label_score), 4)}
    if caption_score is not None:
        detail["caption_score"] = round(float(caption_score), 4)
    return detail


def _reason(probs, given, best, caption_score, class_names) -> str:
    if best == given:
        text = f"CLIP agrees the image shows '{class_names[given]}' ({probs[given]:.0%})"
    else:
        text = (f"CLIP sees '{class_names[best]}' ({probs[best]:.0%}) rather than the given "
                f"'{class_names[given]}' ({probs[given]:.0%})")
    if caption_score is not None:
        text += f"; its caption fits better than {caption_score:.0%} of other captions"
    return text


def image_embeddings(inputs: DetectorInputs) -> np.ndarray:
    own = getattr(inputs.clip, "image_embeddings", None)
    chosen = own if own is not None else inputs.embeddings
    if chosen is None or len(chosen) != inputs.n:
        raise ConfigError("vl_consistency needs CLIP image embeddings for every sample; "
                          "run with --embedder clip")
    return np.asarray(chosen, dtype=np.float32)


@register
class VlConsistency(Detector):
    name = "vl_consistency"
    family = "consistency"
    suggests_labels = True
    requires = frozenset({"clip"})
    params = {"prompt": PROMPT, "label_threshold": 0.2, "caption_threshold": 0.5,
              "caption_sample": 256}
    description = ("CLIP image-text consistency: the image against a prompt of its label "
                   "(relative to other labels) and against its caption (relative to others).")

    def score(self, inputs: DetectorInputs, params: dict, progress: Progress) -> pd.DataFrame:
        images = image_embeddings(inputs)
        prompts = inputs.clip.encode_texts([params["prompt"].format(label=name)
                                            for name in inputs.class_names])
        scale = float(getattr(inputs.clip, "logit_scale", DEFAULT_LOGIT_SCALE))
        probs = label_prompt_probs(images, np.asarray(prompts, dtype=np.float32), scale)
        label_score = probs[np.arange(inputs.n), inputs.labels] / probs.max(axis=1)
        is_issue = label_score < params["label_threshold"]
        caption_score = self._caption_scores(inputs, images, params, progress)
        score = label_score
        if caption_score is not None:
            score = np.minimum(label_score, caption_score)
            is_issue |= caption_score < params["caption_threshold"]
        details = vl_details(probs, label_score, caption_score, inputs.labels, inputs.class_names)
        return result_frame(inputs, np.clip(score, 0, 1), is_issue, details)

    def _caption_scores(self, inputs, images, params, progress) -> np.ndarray | None:
        if inputs.captions is None:
            return None
        progress(0.5, "encoding captions")
        texts = ["" if c is None else str(c) for c in inputs.captions]
        captions = encode_unique(inputs.clip, texts)
        scores = caption_rank_scores(images, captions, params["caption_sample"], inputs.seed)
        missing = np.array([c is None or not str(c).strip() for c in inputs.captions])
        scores[missing] = 1.0
        return scores
