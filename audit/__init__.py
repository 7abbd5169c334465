"""Sieve's domain layer: datasets, the store, embedders, detectors, export and the CLI.

From a notebook: ``from audit import audit_dataframe, audit_hf_dataset`` (``audit.notebook``,
loaded on first use, so ``import audit`` stays light).
"""

__version__ = "0.1.0"

NOTEBOOK_API = ("audit_dataframe", "audit_hf_dataset", "AuditResult")


def __getattr__(name: str):
    if name in NOTEBOOK_API:
        from audit import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'audit' has no attribute {name!r}")
