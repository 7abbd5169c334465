"""Safe paths for an export.

Labels, file names and paths come from the dataset and are untrusted. Here they become safe
single path components (no separators, no ``..``, no hidden or reserved names, bounded
length), names that would collide (also on case-insensitive file systems) get a numeric
suffix, a source file is read only when it resolves to a regular file inside the dataset's
folder (``audit.images.sample_file``, the one containment check), and every target is
checked to lie inside the folder being written.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
from pathlib import Path

from audit.errors import InputError
from audit.images import sample_file

_UNSAFE_CHARACTERS = re.compile(r"[^\w.\- ]")
_RESERVED_STEMS = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                   *(f"lpt{i}" for i in range(1, 10))}
MAX_COMPONENT_BYTES = 120
MAX_SUFFIX_CHARS = 12


class UnusableSource(Exception):
    """A sample's file that the export will not read; ``str(exc)`` is the recorded reason."""


def safe_component(text: str) -> str:
    """One file or folder name made from untrusted text: never empty, ``.``, ``..`` or hidden."""
    name = _UNSAFE_CHARACTERS.sub("_", unicodedata.normalize("NFC", str(text)))
    name = name.strip(" .") or "_"
    stem, suffix = _split_suffix(name)
    name = _truncate(stem, MAX_COMPONENT_BYTES - len(suffix.encode())) + suffix
    if stem.split(".")[0].casefold() in _RESERVED_STEMS:
        name = "_" + name
    return name


def _split_suffix(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > MAX_SUFFIX_CHARS:
        return name, ""
    return stem, "." + suffix


def _truncate(text: str, max_bytes: int) -> str:
    if len(text.encode()) <= max_bytes:
        return text
    return text.encode()[:max_bytes].decode(errors="ignore").rstrip(" .") or "_"


def safe_parts(relative: str) -> list[str]:
    """The components of an untrusted relative path, each made safe; ``..`` and roots dropped."""
    parts = [p for p in re.split(r"[\\/]+", str(relative)) if p not in ("", ".", "..")]
    return [safe_component(p) for p in parts] or ["_"]


class NameAllocator:
    """Hands out unique relative paths, adding ``-2``, ``-3`` ... to a file name on collision."""

    def __init__(self) -> None:
        self._files: set[str] = set()
        self._folders: set[str] = set()

    def claim(self, parts: list[str]) -> str:
        folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(folder.casefold() in self._files for folder in folders):
            parts, folders = ["_".join(parts)], []
        candidate, number = "/".join(parts), 1
        while candidate.casefold() in self._files or candidate.casefold() in self._folders:
            number += 1
            stem, suffix = _split_suffix(parts[-1])
            candidate = "/".join([*parts[:-1], f"{stem}-{number}{suffix}"])
        self._files.add(candidate.casefold())
        self._folders.update(folder.casefold() for folder in folders)
        return candidate


def unique_folder_names(labels: list[str]) -> dict[str, str]:
    """A distinct safe folder name for every label (sorted, so the mapping is stable)."""
    names, taken = {}, set()
    for label in sorted(set(labels)):
        base = candidate = safe_component(label)
        number = 1
        while candidate.casefold() in taken:
            number += 1
            candidate = f"{base}-{number}"
        taken.add(candidate.casefold())
        names[label] = candidate
    return names


def source_file(root: Path, relative: str, follow_links: bool = False) -> str:
    """The regular file a sample's path names, found through the one containment check
    (``audit.images.sample_file``: inside ``root``, already resolved; a link leading outside
    only with ``follow_links``, the setting ingestion used)."""
    text = str(relative)
    try:
        resolved = sample_file(root, text, follow_links)
        mode = os.stat(resolved).st_mode
    except InputError as exc:
        raise UnusableSource(str(exc)) from exc
    except OSError as exc:
        raise UnusableSource(f"cannot read {text!r}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        raise UnusableSource(f"path {text!r} is not a regular file")
    if not os.access(resolved, os.R_OK):
        raise UnusableSource(f"path {text!r} is not readable; check its permissions")
    return str(resolved)


def inside(base: Path, relative: str) -> str:
    """``base / relative`` for a relative path of safe components: refuses empty, ``.``,
    ``..`` and absolute parts, so the target stays inside ``base`` (a folder this export
    created, which holds no links of anyone else's)."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
        raise ValueError(f"export target {relative!r} would leave {base}")
    return os.path.join(base, *parts)


def place_file(source: str, target: str) -> str:
    """Hard-link ``source`` at the new ``target``, or copy it; return "link" or "copy"."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target)
        return "link"
    except FileExistsError:
        raise
    except OSError:
        with open(source, "rb") as reader, open(target, "xb") as writer:
            shutil.copyfileobj(reader, writer)
        return "copy"
