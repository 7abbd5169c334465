"""A finished export as one zip archive (what the dashboard offers for download)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def folder_bytes(folder: Path) -> int:
    """The total size of the files under ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*")
               if f.is_file() and not f.is_symlink())


def zipped(folder: Path) -> bytes:
    """Every file under ``folder`` in a deflated zip, by its path relative to ``folder``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file() and not file.is_symlink():
                archive.write(file, file.relative_to(folder).as_posix())
    return buffer.getvalue()
