"""An export killed with SIGKILL halfway leaves nothing that looks complete, and the next
export to the same place clears the leftovers and succeeds."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from audit.export import ExportRules, export_dataset
from audit.store.exports import list_exports
from tests.audit.test_export_support import files_under, ingest_small

pytestmark = pytest.mark.reliability

IMAGES = 200
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from audit.export import ExportRules, export_dataset
    from audit.settings import load_settings
    from audit.store import Store

    def slow(fraction, message):
        print(message, flush=True)
        time.sleep(0.1)

    settings = load_settings()
    export_dataset(Store.from_settings(settings), settings, int(sys.argv[1]), Path(sys.argv[2]),
                   sys.argv[3], ExportRules(), progress=slow)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_killed_export_leaves_nothing_complete(store, settings, subprocess_env, tmp_path,
                                               fmt) -> None:
    dataset_id = ingest_small(store, settings, tmp_path / "src", n=IMAGES)
    parent = tmp_path / "exports"
    out = parent / "out"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(dataset_id), str(out), fmt],
                             stdout=subprocess.PIPE, text=True, env=subprocess_env, cwd=tmp_path)
    first = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert first.startswith("placed 2/200 files") and child.returncode == -signal.SIGKILL

    assert not out.exists()
    partial = [p.name for p in parent.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(f".out.sieve-partial-{child.pid}-")
    left = files_under(parent / partial[0])
    assert 2 <= len(left) < IMAGES and "sieve_export.json" not in left
    assert not any(name.endswith(".parquet") for name in left)
    assert list_exports(store, dataset_id).empty

    result = export_dataset(store, settings, dataset_id, out, fmt, ExportRules())
    assert [p.name for p in parent.iterdir()] == ["out"]
    assert len([f for f in files_under(out) if f.endswith(".png")]) == IMAGES
    assert (out / "sieve_export.json").is_file() and result.rows_written == IMAGES
