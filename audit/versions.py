"""The software a result was computed with, recorded by every run (``runs.versions``) and
every export (``sieve_export.json``): Sieve, Python and the packages that shape the numbers."""

from __future__ import annotations

import platform
from importlib import metadata

import audit

PACKAGES = ("numpy", "pandas", "pyarrow", "duckdb", "pillow", "torch", "open_clip_torch",
            "cleanlab", "faiss-cpu", "scikit-learn")


def software_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Sieve's and Python's versions and each package's (None when it is not installed)."""
    versions: dict[str, str | None] = {"sieve": audit.__version__,
                                       "python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
