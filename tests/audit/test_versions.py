"""``audit.versions``: the one collector of software versions, for runs and exports alike."""

from __future__ import annotations

import platform

import duckdb

import audit
from audit.versions import PACKAGES, software_versions


def test_sieve_python_and_every_package_are_named() -> None:
    versions = software_versions()
    assert versions["sieve"] == audit.__version__
    assert versions["python"] == platform.python_version()
    assert versions["duckdb"] == duckdb.__version__
    assert set(versions) == {"sieve", "python", *PACKAGES}


def test_a_package_that_is_not_installed_is_none() -> None:
    assert software_versions(("no-such-package-sieve",))["no-such-package-sieve"] is None
