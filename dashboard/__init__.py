"""Sieve's Streamlit dashboard: a router (``app.py``) and one module per page in ``pages/``.

Pages read through ``dashboard.data`` (cached calls of the ``audit`` query APIs) and write
decisions through ``audit.store.flags``; they hold no SQL and run no models.
"""
