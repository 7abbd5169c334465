"""Where an export is written: checked, staged in a hidden folder, moved into place at the end.

The output folder must be new or empty; ``overwrite`` replaces only a previous Sieve export
(a folder holding ``sieve_export.json``), never an arbitrary folder, and never the dataset's
own folder. Everything is written into ``.<name>.sieve-partial-<pid>-<n>`` beside the output
and renamed into place only when complete, with ``sieve_export.json`` written last: an
interrupted export leaves at most a hidden partial folder without provenance, which the next
export to the same place removes once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from audit.errors import InputError

PROVENANCE_NAME = "sieve_export.json"
_PARTIAL = ".sieve-partial-"


def check_out_dir(out_dir: Path, dataset_root: Path, overwrite: bool) -> Path:
    """The resolved output folder, or an InputError saying why it cannot be used."""
    out = Path(out_dir).expanduser().resolve()
    root = Path(dataset_root).resolve()
    if out == root or out.is_relative_to(root) or root.is_relative_to(out):
        raise InputError(
            f"output {out} overlaps the dataset folder {root}; the source is never modified, "
            "so choose a folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} is a file; choose a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        _check_replaceable(out, overwrite)
    return out


def _check_replaceable(out: Path, overwrite: bool) -> None:
    if not overwrite:
        raise InputError(
            f"output {out} is not empty; choose a new or empty folder, or pass --overwrite to "
            "replace a previous export"
        )
    if not (out / PROVENANCE_NAME).is_file():
        raise InputError(
            f"refusing to overwrite {out}: it has no {PROVENANCE_NAME}, so it is not a previous "
            "Sieve export; empty it yourself or choose another folder"
        )


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``out``; removed again if the export fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    stage = out.parent / f".{out.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage)
        raise


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete partial folders for ``out`` left by export processes that no longer run."""
    prefix = f".{out.name}{_PARTIAL}"
    stale = [p for p in out.parent.iterdir()
             if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()
             and not _process_alive(p.name[len(prefix):].split("-")[0])]
    for path in stale:
        shutil.rmtree(path)
    return stale


def _process_alive(pid_text: str) -> bool:
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(stage: Path, out: Path, overwrite: bool) -> None:
    """Move the finished stage to ``out``, replacing an empty folder or a previous export
    (checked again here: another export may have finished there in the meantime)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        _rename(stage, out)
        return
    _check_replaceable(out, overwrite)
    replaced = out.parent / f".{out.name}.sieve-replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _rename(out, replaced)
    _rename(stage, out)
    shutil.rmtree(replaced)


def _rename(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except OSError as exc:
        raise InputError(
            f"could not move the finished export to {target} ({exc.strerror or exc}); "
            "another process may be writing there, so try again with a new folder"
        ) from exc
