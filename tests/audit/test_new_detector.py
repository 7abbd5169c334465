"""A newcomer adding a detector touches its module and its test only (issue 13): in a copy of
the ``audit`` package, one new file under ``audit/detectors/`` is enough for the registry, the
config validation, a real audit run and the export to know it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

PACKAGE = Path(__file__).resolve().parents[2] / "audit"

NEW_DETECTOR = textwrap.dedent('''
    """Narrow images: a made-up detector, written the way the guide says."""

    import numpy as np

    from audit.detectors.base import Detector, register, result_frame


    @register
    class NarrowImage(Detector):
        name = "narrow_image"
        family = "quality"
        requires = frozenset({"labels"})
        description = "Images narrower than 8 pixels."

        def score(self, inputs, params, progress):
            score = np.clip(inputs.widths / 16.0, 0.0, 1.0)
            return result_frame(inputs, score, inputs.widths < 8,
                                [{"reason": f"{w} px wide"} for w in inputs.widths])
''')

AUDIT_AND_EXPORT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from audit.detectors import catalogue
    from audit.export import ExportRules, export_dataset
    from audit.ingest import ingest
    from audit.plan import run_audit
    from audit.settings import load_settings
    from audit.store import Store
    from audit.store.runs import get_run

    settings = load_settings()
    store = Store.from_settings(settings)
    dataset_id = ingest(store, Path(sys.argv[1]), settings, name="shapes")
    run_id = run_audit(store, settings, dataset_id,
                       {"detectors": ["narrow_image"], "embedder": "pixels", "device": "cpu"})
    rules = ExportRules(run_id=run_id, include_flagged=True, detectors=["narrow_image"])
    result = export_dataset(store, settings, dataset_id, Path(sys.argv[2]), "csv", rules)
    print(json.dumps({"facts": [d for d in catalogue() if d["name"] == "narrow_image"],
                      "status": get_run(store, run_id)["status"],
                      "written": result.rows_written}))
''')


def test_one_new_module_is_a_working_detector(tmp_path, subprocess_env) -> None:
    source = tmp_path / "src"
    shutil.copytree(PACKAGE, source / "audit", ignore=shutil.ignore_patterns("__pycache__"))
    (source / "audit" / "detectors" / "narrow_image.py").write_text(NEW_DETECTOR)
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i, width in enumerate((4, 16, 16)):
            Image.new("RGB", (width, 16), (40 * i, 90, 200)).save(images / label / f"{i}.png")

    result = subprocess.run(
        [sys.executable, "-c", AUDIT_AND_EXPORT, str(images), str(tmp_path / "out")],
        env={**subprocess_env, "PYTHONPATH": str(source)}, cwd=tmp_path,
        capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["facts"][0]["family"] == "quality"
    assert outcome["status"] == "succeeded"
    assert outcome["written"] == 4                 # the two 4-pixel-wide images were flagged
