"""``python -m audit <command>``: the command-line face of Sieve.

A user error (``AuditError``) prints one line naming the problem and the fix and exits 2;
anything else keeps its traceback. This module is the outermost layer: it may call every
other layer, and none calls it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from audit.corrections import WHAT_DECISIONS_DO
from audit.embedders import EMBEDDER_CHOICES
from audit.errors import AuditError, ConfigError
from audit.export.rules import FORMATS, LEAKAGE_SIDES
from audit.settings import Settings, check_data_home, config_path, load_settings
from audit.store import Store
from audit.store.datasets import DATASET_REFERENCE

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        check_data_home(settings)
        return int(args.handler(args, settings) or 0)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sieve" if Path(sys.argv[0]).name == "sieve" else "python -m audit",
        description="Sieve: find and fix bad examples in an image dataset.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_ingest, _add_datasets, _add_delete, _add_run, _add_order, _add_jobs,
                _add_cancel, _add_export, _add_serve, _add_demo):
        add(commands)
    return parser


# --- ingest / datasets ---------------------------------------------------------------------

def _add_ingest(commands) -> None:
    cmd = commands.add_parser("ingest", help="add an image folder, a manifest or a Hugging Face "
                              "dataset saved on disk as a dataset",
                              description="Add an image folder (ROOT/<class>/<image>, optionally "
                              "under train/ val/ test/), a manifest (CSV, Parquet, JSONL with "
                              "path and label columns) or a Hugging Face dataset saved on disk "
                              "(a save_to_disk folder, or a Parquet file with a column of image "
                              "bytes; its images are written under the data home) to the store.")
    cmd.add_argument("source", type=Path, help="image folder, manifest file, save_to_disk "
                                               "folder or Parquet file of images")
    cmd.add_argument("--name", help="dataset name (default: the folder or file name)")
    cmd.add_argument("--image-column", default="image",
                     help="Hugging Face datasets: the column of images (default: image)")
    cmd.add_argument("--label-column", default="label",
                     help="Hugging Face datasets: the label column; a ClassLabel's names "
                          "become the labels (default: label)")
    cmd.add_argument("--caption-column", help="Hugging Face datasets: a caption column, if any")
    cmd.add_argument("--new-version", action="store_true",
                     help="store it as the next version of the dataset NAME: it takes the name, "
                          "the old version is renamed NAME@vN, and the decisions of unchanged "
                          "files (same path, label and content) are carried over")
    cmd.add_argument("--executor", help="where the images are read, hashed and checked: local "
                                        "(threads of the worker) or ray (default: the setting)")
    cmd.add_argument("--ray-address", help="the ray executor's cluster: auto joins the running "
                                           "one, host:port a given one (default: the setting; "
                                           "empty starts a local Ray instance)")
    _add_background(cmd)
    cmd.set_defaults(handler=_ingest)


def _add_background(cmd) -> None:
    cmd.add_argument("--background", action="store_true",
                     help="queue the job and return at once instead of following it (follow it "
                          "with `jobs`)")


def _ingest(args, settings: Settings) -> int:
    from jobs.queue import enqueue_ingest

    store = Store.from_settings(settings)
    columns = {"image": args.image_column, "label": args.label_column,
               "caption": args.caption_column}
    return _queue_and_follow(
        store, settings,
        lambda: enqueue_ingest(store, settings, args.source, name=args.name,
                               new_version=args.new_version, columns=columns,
                               executor=args.executor, ray_address=args.ray_address),
        lambda job: f"ingesting {args.source} (job {job})", not args.background,
        lambda job: _print_ingested(store, int(job["result"]["dataset_id"])),
        announce_to=sys.stderr)


def _print_ingested(store: Store, dataset_id: int) -> None:
    from audit.store.datasets import get_dataset, list_datasets

    row = list_datasets(store).set_index("id").loc[dataset_id]
    dataset = get_dataset(store, dataset_id)
    print(f"ingested {dataset.name!r} (id {dataset_id}): {row.samples} samples, {row.classes} "
          f"classes, {row.load_errors} unreadable")
    _print_unreadable(store, dataset_id)
    _print_lineage(store, dataset)


def _print_lineage(store: Store, dataset) -> None:
    """The decisions a new version carried over, or a warning that the folder is already
    another dataset."""
    from audit.dataset_lifecycle import same_source_warning, version_summary
    from audit.store.datasets import get_dataset

    if dataset.parent_id is not None:
        print(version_summary(dataset, get_dataset(store, dataset.parent_id)))
    elif warning := same_source_warning(store, dataset):
        print(f"warning: {warning}", file=sys.stderr)


def _print_unreadable(store: Store, dataset_id: int, shown: int = 3) -> None:
    from audit.store.datasets import samples_frame

    samples = samples_frame(store, dataset_id)
    unreadable = samples[samples["load_error"].notna()]
    for sample in unreadable.head(shown).itertuples():
        print(f"  unreadable {sample.path}: {sample.load_error}", file=sys.stderr)
    if len(unreadable) > shown:
        print(f"  ... and {len(unreadable) - shown} more (see the Datasets page)", file=sys.stderr)


def _add_datasets(commands) -> None:
    cmd = commands.add_parser("datasets", help="list the datasets in the store",
                              description="List every dataset with its size, splits and classes.")
    cmd.set_defaults(handler=_datasets)


def _datasets(args, settings: Settings) -> int:
    from audit.store.datasets import list_datasets

    frame = list_datasets(Store.from_settings(settings))
    if frame.empty:
        print("no datasets yet; add one with `python -m audit ingest PATH`")
        return 0
    print(frame[["id", "name", "version", "kind", "samples", "load_errors", "splits", "classes"]]
          .to_string(index=False))
    return 0


def _add_delete(commands) -> None:
    cmd = commands.add_parser(
        "delete", help="delete a dataset from the store (never its image files)",
        description="Delete a dataset with its samples, runs, scores, decisions and export "
        "records, and the cached embeddings and thumbnails of images no other dataset has. "
        "Image files, manifests and exported folders are not touched. Refused while a job of "
        "the dataset is queued or running.")
    _add_dataset_argument(cmd)
    cmd.add_argument("--yes", action="store_true",
                     help="delete without asking (needed when not run from a terminal)")
    cmd.set_defaults(handler=_delete)


def _delete(args, settings: Settings) -> int:
    from audit.dataset_lifecycle import confirmation_question, delete_dataset
    from audit.errors import InputError
    from audit.store.datasets import get_dataset, list_datasets

    store = Store.from_settings(settings)
    dataset = get_dataset(store, args.dataset)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError(f"not deleting dataset {dataset.name!r} without a confirmation; "
                             "pass --yes to delete it from a script")
        samples = list_datasets(store).set_index("id").loc[dataset.id, "samples"]
        answer = input(f"{confirmation_question(dataset, samples)}\n"
                       "Type the dataset's name to delete it: ")
        if answer.strip() != dataset.name:
            print(f"nothing deleted ({answer.strip()!r} is not {dataset.name!r})", file=sys.stderr)
            return 1
    print(delete_dataset(store, settings, dataset).summary())
    return 0


def _add_dataset_argument(cmd) -> None:
    cmd.add_argument("dataset", help=DATASET_REFERENCE)


# --- run / jobs / cancel -------------------------------------------------------------------

def _add_run(commands) -> None:
    cmd = commands.add_parser("run", help="queue an audit of a dataset",
                              description="Queue an audit job; a background worker runs it. "
                              "Options left out take their values from the settings.")
    _add_dataset_argument(cmd)
    cmd.add_argument("--detectors", help="comma-separated detector names (default: all)")
    cmd.add_argument("--embedder", choices=EMBEDDER_CHOICES,
                     help="auto (CLIP if its weights load, else imagenet), clip, imagenet, "
                          "pixels or cnn")
    cmd.add_argument("--probe", help="the cross-fitted probe that gives pred_probs: mlp "
                                     "(default) or logistic")
    cmd.add_argument("--clip-model", help="open_clip model name, e.g. ViT-B-32")
    cmd.add_argument("--clip-pretrained", help="open_clip pretrained tag or a checkpoint path")
    cmd.add_argument("--device", help="auto, cuda or cpu")
    cmd.add_argument("--executor", help="where the heavy stages (decode + embed, probe folds, kNN "
                                           "searches) run: local (default) or ray")
    cmd.add_argument("--ray-address", help="the ray executor's cluster: auto joins the running "
                                           "one, host:port a given one (default: start a local "
                                           "Ray instance)")
    cmd.add_argument("--k", type=int, help="neighbours in the kNN graph")
    cmd.add_argument("--folds", type=int, help="cross-fitting folds")
    cmd.add_argument("--seed", type=int, help="random seed")
    cmd.add_argument("--embeddings", type=Path, help=".npy of embeddings aligned to the samples")
    cmd.add_argument("--pred-probs", type=Path,
                     help=".npy of out-of-sample predicted probabilities (rows and columns in "
                          "the order `python -m audit order` writes)")
    _add_class_order(cmd)
    cmd.add_argument("--with-decisions", action="store_true",
                     help="start from the reviewed state: " + WHAT_DECISIONS_DO[0].lower()
                     + WHAT_DECISIONS_DO[1:])
    cmd.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
    cmd.set_defaults(handler=_run)


def _run(args, settings: Settings) -> int:
    from audit.config import AuditConfig
    from audit.store.datasets import get_dataset

    store = Store.from_settings(settings)
    dataset = get_dataset(store, args.dataset)
    _check_supplied_files(store, dataset.id, args)
    config = AuditConfig.from_dict(_config_overrides(args), settings)
    return _queue_audit(store, settings, dataset.id, config,
                        lambda job: f"queued job {job} for dataset {dataset.name!r}",
                        wait=args.wait)


def _check_supplied_files(store: Store, dataset_id: int, args) -> None:
    """Refuse a supplied .npy whose header does not fit the dataset before queueing."""
    from audit.store.datasets import samples_frame
    from audit.supplied import check_supplied_file

    supplied = {"embeddings": args.embeddings, "pred_probs": args.pred_probs}
    if any(supplied.values()):
        n_samples = len(samples_frame(store, dataset_id))
        for what, path in supplied.items():
            if path:
                check_supplied_file(path, what, n_samples)


def _config_overrides(args) -> dict:
    options = {
        "detectors": args.detectors.split(",") if args.detectors else None,
        "embedder": args.embedder, "clip_model": args.clip_model,
        "clip_pretrained": args.clip_pretrained, "device": args.device, "k": args.k,
        "folds": args.folds, "seed": args.seed, "probe": args.probe,
        "embeddings_file": str(args.embeddings.resolve()) if args.embeddings else None,
        "pred_probs_file": str(args.pred_probs.resolve()) if args.pred_probs else None,
        "class_order": _class_order(args),
        "use_decisions": True if args.with_decisions else None,
        "executor": args.executor, "ray_address": args.ray_address,
    }
    return {key: value for key, value in options.items() if value is not None}


def _add_class_order(cmd) -> None:
    cmd.add_argument("--class-order", metavar="FILE_OR_LIST",
                     help="the pred_probs column order: a .txt with one class per line, or a "
                          "comma-separated list (default: numeric labels by value, others "
                          "alphabetically)")


def _class_order(args) -> list[str] | None:
    from audit.classes import parse_class_order

    return parse_class_order(args.class_order) if args.class_order else None


def _add_order(commands) -> None:
    cmd = commands.add_parser("order", help="write the row and column order of supplied arrays",
                              description="Write DIR/sample_order.csv (row i of a supplied .npy "
                              "is the sample with row_index i) and DIR/class_order.txt (column k "
                              "of pred_probs is the class on line k+1).")
    _add_dataset_argument(cmd)
    cmd.add_argument("--out", type=Path, required=True, help="folder to write the two files in")
    _add_class_order(cmd)
    cmd.set_defaults(handler=_order)


def _order(args, settings: Settings) -> int:
    from audit.classes import class_order
    from audit.store.datasets import get_dataset, samples_frame
    from audit.supplied import write_order_files

    store = Store.from_settings(settings)
    dataset = get_dataset(store, args.dataset)
    samples = samples_frame(store, dataset.id)
    classes = class_order(samples["label"], _class_order(args))
    for path in write_order_files(samples, classes, args.out):
        print(f"wrote {path}")
    print(f"{dataset.name!r}: {len(samples)} rows, {len(classes)} classes "
          "(a supplied .npy has one row per sample in this order)")
    return 0


def _queue_and_follow(store: Store, settings: Settings, enqueue: Callable[[], int],
                      announce: Callable[[int], str], wait: bool,
                      succeeded: Callable[[dict], None], announce_to: TextIO | None = None) -> int:
    """Queue a job with ``enqueue()``, print ``announce(job_id)`` (on stdout, or
    ``announce_to``) and, with ``wait``, follow it to its end (``succeeded(job)`` prints what it
    made). Ctrl-C is caught from before the job is queued, so the number is always printed; it
    stops the following, not the job."""
    interrupted = threading.Event()
    with _ctrl_c_sets(interrupted) if wait else contextlib.nullcontext():
        job_id = enqueue()
        print(announce(job_id), file=announce_to or sys.stdout, flush=True)
        return _wait(store, settings, job_id, interrupted, succeeded) if wait else 0


@contextlib.contextmanager
def _ctrl_c_sets(event: threading.Event):
    """Ctrl-C sets ``event`` instead of raising, so it ends the following between queries, never
    inside one (nor between queueing a job and printing its number)."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait(store: Store, settings: Settings, job_id: int, interrupted: threading.Event,
          succeeded: Callable[[dict], None]) -> int:
    """0 when the job succeeded; 2 when it failed on something the user can fix (the message
    is printed as ``error: ...``, as for a mistake found before queueing); 1 otherwise."""
    from jobs.follow import follow_job

    try:
        job = follow_job(store, job_id, settings=settings, stop=interrupted)
    except KeyboardInterrupt:
        print(f"\nstopped following job {job_id}; it goes on in the background. Follow it with "
              f"`python -m audit jobs`, stop it with `python -m audit cancel {job_id}`",
              file=sys.stderr)
        return 130
    if job["status"] == "succeeded":
        succeeded(job)
        return 0
    if job["result"].get("user_error"):
        print(f"error: {job['error']}", file=sys.stderr)
        return 2
    print(f"job {job_id} {job['status']}: {job.get('error') or 'no error recorded'}",
          file=sys.stderr)
    return 1


def _queue_audit(store: Store, settings: Settings, dataset_id: int, config,
                 announce: Callable[[int], str], wait: bool) -> int:
    from jobs.queue import enqueue_audit

    return _queue_and_follow(
        store, settings, lambda: enqueue_audit(store, settings, dataset_id, config.to_dict()),
        announce, wait, lambda job: print(f"job {job['id']} succeeded: run {job['run_id']}"))


def _add_jobs(commands) -> None:
    cmd = commands.add_parser("jobs", help="list jobs (audits, ingests, exports), or show one "
                              "job's log",
                              description="List recent jobs with their status and progress.")
    cmd.add_argument("--log", type=int, metavar="ID", help="print the log of job ID")
    cmd.add_argument("--limit", type=_positive_int, default=20, help="how many jobs to list")
    cmd.set_defaults(handler=_jobs)


def _positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _jobs(args, settings: Settings) -> int:
    from jobs.queue import job_log, list_jobs

    store = Store.from_settings(settings)
    if args.log is not None:
        for line in job_log(store, args.log):
            print(line)
        return 0
    frame = list_jobs(store, limit=args.limit)
    if frame.empty:
        print("no jobs yet; queue one with `python -m audit run DATASET`")
        return 0
    print(frame.to_string(index=False))
    return 0


def _add_cancel(commands) -> None:
    cmd = commands.add_parser("cancel", help="ask a queued or running job to stop",
                              description="Cancel a job: a queued job is cancelled at once, a "
                              "running one at its next batch.")
    cmd.add_argument("job_id", type=int, help="job id (see `python -m audit jobs`)")
    cmd.set_defaults(handler=_cancel)


def _cancel(args, settings: Settings) -> int:
    from jobs.queue import request_cancel

    status = request_cancel(Store.from_settings(settings), args.job_id)
    print(f"job {args.job_id}: {status}")
    return 0


# --- export --------------------------------------------------------------------------------

def _add_export(commands) -> None:
    cmd = commands.add_parser(
        "export", help="write the cleaned dataset, or preview it with --dry-run",
        description="Export a cleaned copy of a dataset. Reviewed decisions (remove, relabel, "
        "keep) always apply, in every split. The automatic rules (--include-flagged, "
        "--apply-suggested, --dedupe, score --weights) are opt-in and act only on the splits "
        "in --auto-splits, train alone by default, so val and test change only through "
        "reviewed decisions, an explicit --leakage side or an explicit --auto-splits. "
        "--dry-run prints the preview the Export page shows and writes nothing.")
    _add_dataset_argument(cmd)
    cmd.add_argument("--out", type=Path, help="new or empty output folder (not needed with "
                                              "--dry-run)")
    cmd.add_argument("--format", choices=FORMATS, default="parquet")
    cmd.add_argument("--run", type=int, help="run whose scores to use (default: the latest)")
    cmd.add_argument("--include-flagged", action="store_true",
                     help="also drop every example the chosen detectors flag, by each "
                          "detector's calibrated is_issue (unless a person kept it)")
    cmd.add_argument("--detectors", help="comma-separated detectors for --include-flagged")
    cmd.add_argument("--threshold", type=float,
                     help="with --include-flagged: drop scores below this instead of is_issue")
    cmd.add_argument("--apply-suggested", nargs="?", const="auto", metavar="MIN_CONFIDENCE",
                     help="relabel flagged examples whose suggested label (the one Explore "
                          "shows) has at least this confidence; without a number, the "
                          "suggesting detector's confident-learning threshold of the "
                          "suggested class (the engine's own calibration)")
    cmd.add_argument("--dedupe", action="store_true", help="keep one member of each duplicate set")
    cmd.add_argument("--leakage", choices=LEAKAGE_SIDES, default="keep",
                     help="drop train/test duplicates from this side (explicit: it applies "
                          "whatever --auto-splits says)")
    cmd.add_argument("--weights", action="store_true",
                     help="keep every row and add a sample_weight column instead of dropping")
    cmd.add_argument("--splits", help="comma-separated splits to export (default: all)")
    cmd.add_argument("--auto-splits", default="train", metavar="SPLITS",
                     help="comma-separated splits the automatic rules act on (default: train; "
                          "e.g. train,val)")
    cmd.add_argument("--dry-run", action="store_true",
                     help="print what would be removed, relabelled, weighted and kept per "
                          "split, rule and class; write nothing")
    cmd.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    _add_background(cmd)
    cmd.set_defaults(handler=_export)


def _export(args, settings: Settings) -> int:
    from audit.export import preview_export
    from audit.export.rules import check_format
    from audit.store.datasets import get_dataset
    from jobs.queue import enqueue_export

    store = Store.from_settings(settings)
    dataset = get_dataset(store, args.dataset)
    rules = _export_rules(args)
    check_format(args.format, rules)
    if args.dry_run:
        print(f"dry run: {dataset.name!r} would be exported as {args.format}; nothing written")
        print(preview_export(store, dataset.id, rules).text())
        return 0
    if args.out is None:
        raise ConfigError("export needs --out FOLDER (a new or empty folder), or --dry-run to "
                          "preview without writing")
    return _queue_and_follow(
        store, settings,
        lambda: enqueue_export(store, settings, dataset.id, args.out, args.format,
                               rules.to_dict(), overwrite=args.overwrite),
        lambda job: f"exporting {dataset.name!r} (job {job})", not args.background,
        lambda job: print(f"exported {dataset.name!r} to {job['result']['out_dir']}: "
                          f"{job['result']['summary']}"),
        announce_to=sys.stderr)


def _export_rules(args):
    from audit.export import ExportRules

    return ExportRules(
        run_id=args.run, include_flagged=args.include_flagged,
        detectors=_names(args.detectors), threshold=args.threshold,
        apply_suggested=_min_confidence(args.apply_suggested), dedupe=args.dedupe,
        leakage=args.leakage, weights=args.weights, splits=_names(args.splits),
        auto_splits=_names(args.auto_splits),
    )


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text is not None else None


def _min_confidence(text: str | None) -> float | str | None:
    """--apply-suggested's value: None (off), "auto", or a number (checked by ExportRules)."""
    if text is None or text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--apply-suggested {text!r} is not a number in [0, 1]; give one, "
                          "e.g. --apply-suggested 0.9, or no value for the engine's "
                          "threshold") from None


# --- serve / demo --------------------------------------------------------------------------

def _add_serve(commands) -> None:
    cmd = commands.add_parser("serve", help="start the dashboard",
                              description="Start the Streamlit dashboard on 127.0.0.1. It has "
                              "no login: binding another address needs --allow-remote.")
    cmd.add_argument("--port", type=int, help="port (default: the port setting, 8501)")
    cmd.add_argument("--host", help="address to bind (default: the host setting, 127.0.0.1)")
    _add_allow_remote(cmd)
    cmd.set_defaults(handler=_serve)


def _add_allow_remote(cmd) -> None:
    cmd.add_argument("--allow-remote", action="store_true",
                     help="let the dashboard bind a non-loopback address: anyone who reaches it "
                          "can see every dataset and record decisions and exports, with no login")


def _serve(args, settings: Settings) -> int:
    host = args.host or settings.host
    check_host(host, args.allow_remote)
    return serve(settings, host, args.port or settings.port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless ``allow_remote``; warn when it is allowed."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ConfigError(
            f"refusing to serve on {host}: the dashboard has no login, so any address but "
            "127.0.0.1 exposes every dataset's images, decisions and exports to the network; "
            "pass --allow-remote to do it anyway (README: Serving beyond this machine)"
        )
    print(f"warning: serving on {host} with no login: anyone who can reach it can browse every "
          "dataset, record decisions, ingest folders and write exports on this machine",
          file=sys.stderr, flush=True)


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the dashboard with exactly this command's settings: every setting is passed to
    Streamlit's process as ``AUDIT_*`` (it runs from the project folder, not the caller's)."""
    from jobs.queue import worker_environment

    command = [
        sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "dashboard" / "app.py"),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]
    env = dict(worker_environment(settings), AUDIT_CONFIG=str(config_path().resolve()))
    print(f"Sieve dashboard: http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    return run_until_stopped(subprocess.Popen(command, env=env, cwd=PROJECT_ROOT))


def run_until_stopped(child: subprocess.Popen) -> int:
    """Wait for ``child``; a SIGINT or SIGTERM to this process stops the child too (sent on),
    and the child is never left running when this process returns. 0 when stopped by a signal."""
    stopped = []

    def send_on(signum, frame) -> None:
        stopped.append(signum)
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, send_on)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _end_child(child)
    return 0 if stopped else code


def _end_child(child: subprocess.Popen, grace_s: float = 10.0) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _add_demo(commands) -> None:
    cmd = commands.add_parser("demo", help="generate the demo dataset, audit it, open the dashboard",
                              description="Generate the demo (handwritten digits with planted "
                              "problems), ingest it, audit it in the background with a progress "
                              "bar, then start the dashboard.")
    cmd.add_argument("--no-serve", action="store_true", help="stop after the audit finishes")
    cmd.add_argument("--port", type=int, help="dashboard port (default 8501)")
    cmd.add_argument("--seed", type=int, default=0, help="seed for the demo dataset")
    _add_allow_remote(cmd)
    cmd.set_defaults(handler=_demo)


def _demo(args, settings: Settings) -> int:
    from audit.demo import ensure_demo_dataset
    from audit.config import AuditConfig

    if not args.no_serve:
        check_host(settings.host, args.allow_remote)
    store = Store.from_settings(settings)
    dataset_id = ensure_demo_dataset(store, settings, seed=args.seed,
                                     progress=_print_progress("demo"))
    config = AuditConfig.from_dict({}, settings)
    status = _queue_audit(store, settings, dataset_id, config,
                          lambda job: f"auditing the demo in the background (job {job})", wait=True)
    if status != 0 or args.no_serve:
        return status
    return serve(settings, settings.host, args.port or settings.port)


def _print_progress(stage: str):
    def report(fraction: float, message: str) -> None:
        end = "\n" if fraction >= 1 else "\r"
        print(f"{stage}: {fraction:6.1%} {message}", end=end, file=sys.stderr, flush=True)
    return report
