"""Sieve from a notebook: audit a DataFrame of image paths and labels, or a Hugging Face dataset,
read the scores back as a DataFrame, open the dashboard on the result.

    result = audit_dataframe(df, path_column="path", label_column="label", embedder="pixels")
    scores = result.scores()          # one row per sample, in df's order
    print(result.open_dashboard())    # the dashboard's URL, on this dataset and run

It takes the command line's path, not a second one: the rows are checked like a manifest and
ingested into the store (``audit.ingest``), the audit is queued as a job
(``jobs.queue.enqueue_audit``) that a background worker runs with ``audit.plan``, and it is
followed like ``python -m audit run --wait`` (``jobs.follow``). So, like the CLI, this module is
an outer face of Sieve and may import ``jobs``; no other module of ``audit`` does.

Running the same cell again reuses the dataset when its images and labels are unchanged (a new
audit run each time); a name that is taken by other images is refused.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd

from audit.ingest import check_listing, ingest_listing, read_source
from audit.errors import AuditError, InputError, NotFoundError
from audit.hf_datasets import HFColumns
from audit.settings import Settings, check_data_home, load_settings
from audit.store import Store
from audit.store.datasets import get_dataset, samples_frame
from audit.store.exports import run_detectors
from audit.store.runs import run_samples_frame, scores_frame
from jobs.follow import follow_job
from jobs.queue import enqueue_audit, worker_environment

DASHBOARD_START_S = 120.0
LOOPBACK = "127.0.0.1"
COMPARED_COLUMNS = ["path", "label", "split", "caption"]


def audit_dataframe(frame: pd.DataFrame, path_column: str = "path", label_column: str = "label",
                    split_column: str | None = None, caption_column: str | None = None, *,
                    root: str | os.PathLike | None = None, name: str | None = None,
                    data_home: str | os.PathLike | None = None, wait: bool = True,
                    **options) -> "AuditResult":
    """Audit the images a DataFrame lists. Paths are relative to ``root`` (default: the working
    directory) or absolute; ``options`` are the audit's (``detectors=[...]``, ``embedder=``,
    ``folds=``, ...: ``audit.config.AuditConfig``). With ``wait`` (default) it returns once the
    audit finished; otherwise ``result.wait()`` follows it."""
    settings = _settings(data_home)
    listing, base = _frame_listing(frame, {"path": path_column, "label": label_column,
                                           "split": split_column, "caption": caption_column},
                                   root, settings.follow_outside_links)
    store = Store.from_settings(settings)
    dataset_id = _dataset_for(store, settings, listing, base, name, kind="dataframe",
                              known_errors=None)
    return _queue(store, settings, dataset_id, options, wait)


def audit_hf_dataset(dataset, image_column: str = "image", label_column: str = "label",
                     caption_column: str | None = None, *, name: str | None = None,
                     data_home: str | os.PathLike | None = None, wait: bool = True,
                     **options) -> "AuditResult":
    """Audit a Hugging Face dataset: a ``save_to_disk`` folder or a Parquet file (a path), or a
    ``datasets.Dataset`` / ``DatasetDict`` (saved to a temporary folder first). A ClassLabel's
    names become the labels. ``options`` as for ``audit_dataframe``."""
    settings = _settings(data_home)
    columns = HFColumns(image_column, label_column, caption_column)
    store = Store.from_settings(settings)
    if isinstance(dataset, (str, os.PathLike)):
        source = Path(dataset).expanduser().resolve()
        listing, root, kind, errors = read_source(source, settings, columns)
        name = name or (source.stem if source.is_file() else source.name)
    else:
        listing, root, errors = _saved_listing(dataset, settings, columns)
        kind, source = "huggingface", f"a {type(dataset).__name__} saved from a notebook"
    dataset_id = _dataset_for(store, settings, listing, root, name, kind=kind,
                              known_errors=errors, source=str(source))
    return _queue(store, settings, dataset_id, options, wait)


def _settings(data_home: str | os.PathLike | None) -> Settings:
    settings = load_settings()
    if data_home is not None:
        settings = dataclasses.replace(settings, data_home=Path(data_home))
    check_data_home(settings)
    return settings


# --- the dataset -----------------------------------------------------------------------------

def _frame_listing(frame: pd.DataFrame, columns: dict[str, str | None],
                   root: str | os.PathLike | None, follow_links: bool) -> tuple[pd.DataFrame, Path]:
    """The DataFrame as a checked listing with paths relative to its root (``root``, else the
    folder all its images are under)."""
    wanted = {role: column for role, column in columns.items() if column is not None}
    missing = [column for column in wanted.values() if column not in frame.columns]
    if missing:
        raise InputError(f"the DataFrame has no column(s) {missing}; its columns are "
                         f"{list(frame.columns)}. Name yours with path_column=, label_column=, "
                         "split_column= or caption_column=")
    listing = pd.DataFrame({role: frame[column].to_numpy(dtype=object)
                            for role, column in wanted.items()})
    listing["path"], top = _relative_paths(listing["path"], root)
    return check_listing(listing, "the DataFrame", top, follow_links), top


def _relative_paths(paths: pd.Series, root: str | os.PathLike | None) -> tuple[list, Path]:
    """The paths relative to ``root`` (default: the folder all of them are under; a relative
    path is relative to the working directory) and that folder, resolved. A blank path stays
    blank, for ``check_listing`` to name its row."""
    base = Path(root).expanduser().absolute() if root is not None else Path.cwd()
    absolute = [None if _blank(p) else os.path.abspath(base / str(p)) for p in paths]
    given = [p for p in absolute if p is not None]
    top = base if root is not None or not given else Path(
        os.path.commonpath([os.path.dirname(p) for p in given]))
    return [p if p is None else os.path.relpath(p, top) for p in absolute], top.resolve()


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or str(value) == ""


def _saved_listing(dataset, settings: Settings,
                   columns: HFColumns) -> tuple[pd.DataFrame, Path, list | None]:
    """A ``datasets`` object saved to a temporary folder in the data home and read from there;
    its images stay under the data home, the folder goes."""
    if not hasattr(dataset, "save_to_disk"):
        raise InputError(f"{type(dataset).__name__} is not a Hugging Face Dataset or "
                         "DatasetDict; give one, or the path of a save_to_disk folder")
    with tempfile.TemporaryDirectory(dir=settings.data_home, prefix="hf-save-") as folder:
        dataset.save_to_disk(folder)
        listing, root, _, errors = read_source(Path(folder).resolve(), settings, columns)
    return listing, root, errors


def _dataset_for(store: Store, settings: Settings, listing: pd.DataFrame, root: Path,
                 name: str | None, *, kind: str, known_errors: list | None,
                 source: str | None = None) -> int:
    """The id of the dataset holding exactly these rows: the one named so when it does (a cell
    run again), else a new one; a name taken by other rows is refused."""
    facts = _listing_facts(listing, root)
    name = name or f"{kind}-{hashlib.sha256(facts.encode()).hexdigest()[:12]}"
    try:
        existing = get_dataset(store, f"name:{name}")
    except NotFoundError:
        return ingest_listing(store, listing, root, settings, name=name,
                              source=source or str(root), kind=kind, known_errors=known_errors)
    if _listing_facts(samples_frame(store, existing.id), Path(existing.root)) == facts:
        return existing.id
    raise InputError(f"a dataset named {name!r} already exists with other images or labels; "
                     f"pass another name=, or delete that one (`python -m audit delete {name}`)")


def _listing_facts(listing: pd.DataFrame, root: Path) -> str:
    """What makes two listings the same dataset: root, rows (path, label, split, caption) and
    each file's size, as text."""
    rows = listing.reindex(columns=COMPARED_COLUMNS).astype(object)
    rows = rows.where(rows.notna(), None).to_numpy().tolist()
    sizes = [_size(root / path) for path in listing["path"]]
    return json.dumps([str(root), rows, sizes], default=str)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


# --- the audit -------------------------------------------------------------------------------

def _queue(store: Store, settings: Settings, dataset_id: int, options: dict,
           wait: bool) -> "AuditResult":
    job_id = enqueue_audit(store, settings, dataset_id, options)
    dataset = get_dataset(store, dataset_id)
    result = AuditResult(dataset.name, dataset.id, job_id, settings)
    return result.wait() if wait else result


@dataclasses.dataclass
class AuditResult:
    """One audit: the job that runs it and, once it succeeded, its run."""

    dataset: str
    dataset_id: int
    job_id: int
    settings: Settings = dataclasses.field(repr=False)
    run_id: int | None = None

    def wait(self, progress: bool = True) -> "AuditResult":
        """Follow the job until it ends (a progress line on stderr); an ``AuditError`` when it
        failed or was cancelled. Interrupting stops the following, not the audit."""
        if self.run_id is not None:
            return self
        out = sys.stderr if progress else io.StringIO()
        try:
            job = follow_job(self._store(), self.job_id, out=out, settings=self.settings)
        except KeyboardInterrupt:
            print(f"stopped following job {self.job_id}; it goes on in the background: "
                  "result.wait() follows it again, `python -m audit cancel "
                  f"{self.job_id}` stops it", file=sys.stderr)
            raise
        if job["status"] != "succeeded":
            raise AuditError(f"job {self.job_id} {job['status']}: "
                             f"{job.get('error') or 'no error recorded'}; its log: "
                             f"`python -m audit jobs --log {self.job_id}`")
        self.run_id = int(job["run_id"])
        return self

    def scores(self) -> pd.DataFrame:
        """One row per sample, in the dataset's order (a DataFrame's own): sample_id, path,
        label, split, the probe's predicted_label, then ``<detector>_score`` (in [0, 1], lower
        is more likely a problem, as in cleanlab) and ``<detector>_is_issue`` per detector. An
        image that could not be read has no scores (NaN)."""
        self.wait()
        store = self._store()
        samples = samples_frame(store, self.dataset_id)
        root = Path(get_dataset(store, self.dataset_id).root)
        frame = pd.DataFrame({"sample_id": samples["sample_id"],
                              "path": [str(root / p) for p in samples["path"]],
                              "label": samples["label"], "split": samples["split"]})
        predicted = run_samples_frame(store, self.run_id).set_index("sample_id")
        frame["predicted_label"] = frame["sample_id"].map(predicted["predicted_label"])
        scores = scores_frame(store, self.run_id)
        for detector in run_detectors(store, self.run_id):
            mine = scores[scores["detector"] == detector].set_index("sample_id")
            frame[f"{detector}_score"] = frame["sample_id"].map(mine["score"]).astype(float)
            frame[f"{detector}_is_issue"] = frame["sample_id"].map(mine["is_issue"]).astype(
                "boolean")
        return frame

    def open_dashboard(self, port: int | None = None) -> "Dashboard":
        """Start the dashboard (``python -m audit serve`` on 127.0.0.1, in the background) on
        this dataset and run; it answers when this returns. ``str()`` of it is the URL."""
        self.wait()
        return Dashboard.start(self.settings, port or _free_port(self.settings.port),
                               {"dataset": self.dataset_id, "run": self.run_id})

    def _store(self) -> Store:
        return Store.from_settings(self.settings)


# --- the dashboard ---------------------------------------------------------------------------

class Dashboard:
    """A dashboard server started from a notebook. ``stop()`` ends it, as does the end of the
    Python process that started it."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    @classmethod
    def start(cls, settings: Settings, port: int, query: dict) -> "Dashboard":
        logs = Path(settings.data_home).resolve() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"dashboard-{port}.log"
        command = [sys.executable, "-m", "audit", "serve", "--host", LOOPBACK, "--port", str(port)]
        with open(log, "ab") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       env=worker_environment(settings))
        dashboard = cls(process, f"http://{LOOPBACK}:{port}/?{urllib.parse.urlencode(query)}",
                        log)
        atexit.register(dashboard.stop)
        dashboard._wait_until_answering(f"http://{LOOPBACK}:{port}/_stcore/health")
        return dashboard

    def _wait_until_answering(self, health: str) -> None:
        deadline = time.monotonic() + DASHBOARD_START_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AuditError(f"the dashboard did not start (see {self.log}); try another port: "
                         "open_dashboard(port=...)")

    def stop(self) -> None:
        """Stop the server (and the Streamlit process it runs); nothing if it has ended."""
        if self.process.poll() is None:
            self.process.terminate()   # serve passes it on to Streamlit and waits for it
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Dashboard({self.url!r})"


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens there, else any free port on the loopback address."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise AuditError("no free port on 127.0.0.1 for the dashboard; pass open_dashboard(port=...)")
