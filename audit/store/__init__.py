"""The store: the only code in Sieve that speaks SQL.

Submodules own one group of tables each (``datasets``, ``runs``, ``flags``, ``jobs``,
``exports``, ``explore``, and the dashboard's read queries ``insights`` and
``lookups``); all share ``Store.transaction()`` from ``connection``.
"""

from audit.store.connection import Store

__all__ = ["Store"]
