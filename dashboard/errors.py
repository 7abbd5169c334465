"""The one way the dashboard shows a problem the user can fix (an ``AuditError``)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import streamlit as st

from audit.errors import AuditError
from dashboard.widgets import plain


def show_error(exc: AuditError) -> None:
    """One red box with the error's message (which names the object and the fix)."""
    st.error(plain(str(exc)), icon=":material/error:")


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Run a block; an ``AuditError`` inside it is shown with ``show_error`` and the page
    goes on. Every other exception keeps its traceback."""
    try:
        yield
    except AuditError as exc:
        show_error(exc)
