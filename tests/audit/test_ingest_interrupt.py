"""An ingest killed with SIGKILL at any point leaves all of the dataset or none of it, and the
same ingest run again afterwards succeeds."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from audit.ingest import ingest
from audit.store.datasets import get_dataset, list_datasets, samples_frame

pytestmark = pytest.mark.reliability

IMAGES = 1024          # ingest reports progress every 256 images (INSPECT_BATCH)
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from audit.ingest import ingest
    from audit.settings import load_settings
    from audit.store import Store

    settings = load_settings()
    ingest(Store.from_settings(settings), Path(sys.argv[1]), settings, name="killed",
           progress=lambda fraction, message: print(message, flush=True))
    print("finished", flush=True)
""")
# (progress line after which to kill, extra delay in s): during reading, then across the write.
KILL_POINTS = [(1, 0.0), (4, 0.0), (4, 0.05), (4, 0.15), (4, 0.3), (4, 0.6)]


@pytest.fixture
def folder(tmp_path):
    for i in range(IMAGES):
        path = tmp_path / "src" / ("cat" if i % 2 else "dog") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (i % 256, 0, 0)).save(path)
    return tmp_path / "src"


@pytest.mark.parametrize("line, delay", KILL_POINTS)
def test_killed_ingest_leaves_all_or_nothing(store, settings, subprocess_env, folder, line,
                                             delay) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder)], stdout=subprocess.PIPE,
                             text=True, env=subprocess_env)
    seen = [child.stdout.readline() for _ in range(line)]
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    child.stdout.close()
    assert seen[0].startswith("read images: 256 of 1,024")

    stored = list_datasets(store)
    if stored.empty:                       # nothing: the same ingest now succeeds in full
        dataset_id = ingest(store, folder, settings, name="killed")
    else:                                  # all: every sample is there
        dataset_id = int(stored["id"].iloc[0])
    assert get_dataset(store, dataset_id).name == "killed"
    assert len(samples_frame(store, dataset_id)) == IMAGES
