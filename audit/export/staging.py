"""Where an export is written: checked, staged in a hidden folder, moved into place at the end.

The output folder must be new or empty; ``overwrite`` replaces only a previous Sieve export
that holds nothing else: its ``sieve_export.json`` lists every file the export wrote
(``files.written``), and any other file, folder or link in it makes ``overwrite`` refuse,
naming it. It never replaces the dataset's own folder. Everything is written into
``.<name>.sieve-partial-<pid>-<n>`` beside the output and renamed into place only when
complete, with ``sieve_export.json`` written last: an interrupted export leaves at most a
hidden partial folder without provenance, which the next export to the same place removes
once its process is gone. A replaced export is moved aside, checked again (so nothing added
meanwhile is lost; the old export goes back if something was) and then only its listed files
are deleted: a file that appears in the moved-aside folder after that check stays there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from audit.errors import InputError
from audit.processes import pid_alive

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


def _check_replaceable(out: Path, overwrite: bool) -> set[str]:
    if not overwrite:
        raise InputError(
            f"output {out} is not empty; choose a new or empty folder, or allow replacing a "
            "previous export (--overwrite on the command line, \"Replace a previous export in "
            "this folder\" on the Export page)"
        )
    return replaceable_files(out, shown_as=out)


def replaceable_files(folder: Path, shown_as: Path) -> set[str]:
    """The files of the Sieve export in ``folder`` (relative paths, its provenance included),
    or an InputError naming ``shown_as`` when the folder holds anything that export did not
    write."""
    listed = _listed_files(folder)
    if listed is None:
        reason = (f"its {PROVENANCE_NAME} does not list the files a Sieve export wrote, so it "
                  "may hold files of yours" if os.path.lexists(folder / PROVENANCE_NAME) else
                  f"it has no {PROVENANCE_NAME}, so it is not a previous Sieve export")
        raise InputError(f"refusing to overwrite {shown_as}: {reason}; empty it yourself or "
                         "choose another folder")
    foreign = _foreign_entries(folder, listed)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise InputError(
            f"refusing to overwrite {shown_as}: {foreign[0]!r}{more} was not written by the "
            "Sieve export there; move it away or choose another folder"
        )
    return listed


def written_files(stage: Path) -> list[str]:
    """Every file in a finished stage, relative and sorted: the list ``sieve_export.json``
    keeps as ``files.written``."""
    return sorted(name for name, entry in _entries(stage) if entry.is_file(follow_symlinks=False))


def _listed_files(folder: Path) -> set[str] | None:
    provenance = folder / PROVENANCE_NAME
    if provenance.is_symlink() or not provenance.is_file():
        return None
    try:
        written = json.loads(provenance.read_text(encoding="utf-8"))["files"]["written"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return None
    if not isinstance(written, list) or not all(isinstance(name, str) for name in written):
        return None
    return {*written, PROVENANCE_NAME}


def _foreign_entries(folder: Path, listed: set[str]) -> list[str]:
    """Relative paths under ``folder`` that are neither a listed regular file nor a folder on
    the way to one; links of any kind count as foreign."""
    folders = {name.rsplit("/", depth)[0] for name in listed
               for depth in range(1, name.count("/") + 1)}
    return sorted(name for name, entry in _entries(folder)
                  if not (entry.is_file(follow_symlinks=False) and name in listed
                          or entry.is_dir(follow_symlinks=False) and name in folders))


def _entries(folder: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry]]:
    """Every entry under ``folder`` with its relative path, parents before children; links
    are reported, never followed."""
    with os.scandir(folder) as found:
        entries = list(found)
    for entry in entries:
        name = prefix + entry.name
        yield name, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(Path(entry.path), name + "/")


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
             and not _owner_alive(p.name[len(prefix):].split("-")[0])]
    for path in stale:
        shutil.rmtree(path)
    return stale


def _owner_alive(pid_text: str) -> bool:
    """A partial folder whose name holds no pid is never taken for a dead process's."""
    return not pid_text.isdigit() or pid_alive(int(pid_text))


def publish(stage: Path, out: Path, overwrite: bool) -> None:
    """Move the finished stage to ``out``, replacing an empty folder or a previous export
    (checked again here and once more after moving it aside: another process may have
    written there in the meantime)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        _rename(stage, out)
        return
    _check_replaceable(out, overwrite)
    replaced = out.parent / f".{out.name}.sieve-replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _rename(out, replaced)
    try:
        listed = replaceable_files(replaced, shown_as=out)
    except InputError:
        _rename(replaced, out)
        raise
    _rename(stage, out)
    _remove_listed(replaced, listed)


def _remove_listed(folder: Path, listed: set[str]) -> None:
    """Delete the listed regular files under ``folder``, then every folder left empty."""
    entries = list(_entries(folder))
    for name, entry in entries:
        if entry.is_file(follow_symlinks=False) and name in listed:
            os.unlink(entry.path)
    for _, entry in reversed(entries):
        if entry.is_dir(follow_symlinks=False) and not os.listdir(entry.path):
            os.rmdir(entry.path)
    if not os.listdir(folder):
        folder.rmdir()


def _rename(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except OSError as exc:
        raise InputError(
            f"could not move the finished export to {target} ({exc.strerror or exc}); "
            "another process may be writing there, so try again with a new folder"
        ) from exc
