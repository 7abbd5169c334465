"""Explore as a first page that can be trusted: sorted by ``overall`` worst first with a
continuous tie-break, a banner with what the run measured about itself (and advice only when
its signal is weak), cards with split, file name, the top reason and a decided look."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from audit.store import explore
from audit.store import runs as run_store
from audit.store.datasets import samples_frame
from audit.store.flags import Decision, record_decisions
from dashboard.widgets import plain
from tests.dashboard.conftest import APP, caption_lines, run_facts, truth_scores

TIMEOUT = 60

STRONG = {
    "embedder": {"name": "imagenet", "model_id": "efficientnet-lite0", "asked_for": "auto",
                 "why": "CLIP weights unavailable: no file /models/vit.bin"},
    "pred_probs": {"source": "cross-fitted logistic probe, 5 folds",
                   "agreement_with_labels": 0.9137},
    "overall": {"estimated_label_errors": 57, "interval_90": [49, 66], "flagged": 58,
                "weights": {"knn_label": 0.25, "label_issue": 0.75}},
    "decisions": {"through_id": 12, "relabelled": 3, "removed": 2, "kept": 1},
}
WEAK = {
    "embedder": {"name": "pixels", "model_id": "pixels-16", "asked_for": "auto",
                 "why": "pixels chosen over imagenet: nearest neighbours match better"},
    "pred_probs": {"source": "cross-fitted logistic probe, 5 folds",
                   "agreement_with_labels": 0.4121},
    "overall": {"estimated_label_errors": 83, "interval_90": [21, 240], "flagged": 83,
                "weights": {"knn_label": 0.6, "label_issue": 0.4}},
}


def _usable(home) -> pd.DataFrame:
    samples = samples_frame(home["store"], home["dataset_id"])
    usable = samples[samples["load_error"].isna()]
    return usable.sort_values("row_index").reset_index(drop=True)


def _add_run(home, scores: pd.DataFrame, summary: dict | None = None) -> int:
    """A new succeeded run of the demo (so the one the pages open on) with these scores."""
    store, usable = home["store"], _usable(home)
    run_id = run_store.create_run(store, home["dataset_id"], {})
    run_store.write_scores(store, run_id, scores)
    run_store.write_run_samples(store, run_id, run_facts(usable, home["truth"]))
    run_store.finish_run(store, run_id, "succeeded", summary=summary)
    return run_id


def _open(home) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _picks(at: AppTest) -> list[str]:
    return [c.key.removeprefix("pick|") for c in at.checkbox if c.key and c.key.startswith("pick|")]


def _unescaped(text: str) -> str:
    return text.replace("\\", "")


def _banner(at: AppTest) -> str:
    return " ".join(_unescaped(i.value) for i in at.info)


def _warnings(at: AppTest) -> str:
    return " ".join(_unescaped(w.value) for w in at.warning)


# --- default order and tie-break -------------------------------------------------------------

def test_explore_opens_sorted_by_overall_worst_first(app_home):
    at = _open(app_home)
    assert at.selectbox(key="sort").value == "overall"
    expected = explore.explore_page(
        app_home["store"], app_home["dataset_id"], app_home["run_id"],
        explore.ExploreFilters(flagged_only=True, sort_by="overall"), page_size=48).rows
    assert _picks(at) == expected["sample_id"].tolist()
    position = explore.ensure_explore_index(app_home["store"], app_home["run_id"]).index("overall")
    overall = [scores[position] for scores in expected["scores"]]
    assert overall == sorted(overall)


def test_a_run_without_overall_opens_on_the_worst_score(app_home):
    scores = truth_scores(_usable(app_home), app_home["truth"])
    _add_run(app_home, scores[scores["detector"] != "overall"])
    at = _open(app_home)
    assert at.selectbox(key="sort").value == "worst"


def test_tied_scores_are_broken_by_the_mean_score_then_dataset_order(app_home):
    usable = _usable(app_home)
    n = len(usable)
    tied = np.full(n, 0.2)        # every sample has the same overall score
    doubt = np.linspace(0.9, 0.1, n)   # later rows are doubted more by label_issue
    doubt[-10:] = 0.05            # ... and the last ten equally: dataset order decides
    frames = [pd.DataFrame({"sample_id": usable["sample_id"], "detector": name, "score": score,
                            "is_issue": False, "details": "{}"})
              for name, score in (("overall", tied), ("label_issue", doubt))]
    run_id = _add_run(app_home, pd.concat(frames, ignore_index=True))
    page = explore.explore_page(app_home["store"], app_home["dataset_id"], run_id,
                                explore.ExploreFilters(sort_by="overall"), page_size=20).rows
    last_ten = usable["sample_id"].tolist()[-10:]
    assert page["sample_id"].tolist()[:10] == last_ten          # tied twice: row order
    assert page["sample_id"].tolist()[10:] == usable["sample_id"].tolist()[-20:-10][::-1]
    best = explore.explore_page(app_home["store"], app_home["dataset_id"], run_id,
                                explore.ExploreFilters(sort_by="overall", worst_first=False),
                                page_size=3).rows
    assert best["sample_id"].tolist() == usable["sample_id"].tolist()[:3]


# --- the banner ------------------------------------------------------------------------------

@pytest.mark.parametrize("summary", [STRONG, WEAK], ids=["strong", "weak"])
def test_banner_states_what_the_run_measured(app_home, summary):
    _add_run(app_home, truth_scores(_usable(app_home), app_home["truth"]), summary)
    banner = _banner(_open(app_home))
    embedder, overall = summary["embedder"], summary["overall"]
    assert f"Embedder: {embedder['name']} ({embedder['model_id']})" in banner
    assert f"asked for {embedder['asked_for']}; why: {embedder['why']}" in banner
    assert f"{summary['pred_probs']['agreement_with_labels']:.1%}" in banner
    assert "cross-validated accuracy" in banner
    low, high = overall["interval_90"]
    assert (f"Estimated label errors: {overall['estimated_label_errors']} "
            f"(90% interval {low} to {high}); overall flags {overall['flagged']}") in banner
    if "decisions" in summary:
        decisions = summary["decisions"]
        assert (f"reviewed decisions up to log entry {decisions['through_id']}: "
                f"{decisions['relabelled']} relabelled, {decisions['removed']} removed, "
                f"{decisions['kept']} kept") in banner
    else:
        assert "reviewed decisions" not in banner


def test_weak_signal_advice_shows_only_when_the_signal_is_weak(app_home):
    scores = truth_scores(_usable(app_home), app_home["truth"])
    _add_run(app_home, scores, STRONG)
    strong = _open(app_home)
    assert "weak" not in _warnings(strong) and not strong.code
    _add_run(app_home, scores, WEAK)
    weak = _open(app_home)
    advice = _warnings(weak)
    assert "The signal is weak" in advice
    assert "embedded with pixels" in advice
    assert f"{WEAK['pred_probs']['agreement_with_labels']:.1%} of the given labels" in advice
    assert "(21 to 240) is wider than the estimate" in advice
    commands = "\n".join(c.value for c in weak.code).splitlines()
    assert "python -m audit run demo --pred-probs probs.npy" in commands
    assert any("--embedder clip --clip-pretrained" in c for c in commands)


# --- cards -----------------------------------------------------------------------------------

def test_cards_show_split_file_name_and_the_top_reason(app_home):
    at = _open(app_home)
    at.selectbox(key="detector").set_value("label_issue")
    at = at.run()
    scores = run_store.scores_frame(app_home["store"], app_home["run_id"])
    flagged = scores[scores["is_issue"]].sort_values(["score", "detector"])
    worst = flagged.groupby("sample_id").first()
    samples = samples_frame(app_home["store"], app_home["dataset_id"]).set_index("sample_id")
    captions = set(caption_lines(at))
    picks = _picks(at)
    assert picks
    for sample_id in picks:
        split, path = samples.loc[sample_id, ["split", "path"]]
        assert plain(f"{split} · {PurePosixPath(path).name}") in captions
        reason = json.loads(worst.loc[sample_id, "details"])["reason"]
        assert plain(f"{worst.loc[sample_id, 'detector']}: {reason}") in captions


def test_decided_cards_show_the_decision_and_a_greyed_image(app_home):
    at = _open(app_home)
    removed, relabelled, kept = _picks(at)[:3]
    before = [image.proto.imgs[0].url for image in at.image][:4]
    record_decisions(app_home["store"], app_home["dataset_id"], [
        Decision(removed, "remove"), Decision(relabelled, "relabel", "seven"),
        Decision(kept, "keep")])
    at = at.run()
    assert not at.exception
    badges = [_unescaped(m.value) for m in at.markdown if "-badge[" in m.value]
    assert badges == [":red-badge[:material/delete: removed]",
                      ":blue-badge[:material/edit: relabelled to seven]",
                      ":green-badge[:material/check: kept]"]
    after = [image.proto.imgs[0].url for image in at.image][:4]
    assert after[3] == before[3]                # the undecided card's image is unchanged
    assert all(a != b for a, b in zip(after[:3], before[:3]))   # the decided ones are greyed


def test_banner_shows_html_in_the_summary_as_text(app_home):
    hostile = {**STRONG, "embedder": {**STRONG["embedder"], "name": "pixels",
                                      "why": "<script>alert(1)</script> <b>x</b>"}}
    _add_run(app_home, truth_scores(_usable(app_home), app_home["truth"]), hostile)
    at = _open(app_home)
    shown = [element.value for element in [*at.info, *at.warning]]
    assert shown and not any("<script>" in v or "<b>" in v for v in shown)
    assert "why: <script>alert(1)</script> <b>x</b>" in _banner(at)
