"""Small building blocks shared by the pages: escaped text, sample images, the grid card.

Every string that came from a dataset (labels, captions, paths, ids) is untrusted. It is shown
with ``st.text`` (never interpreted) or, where markdown is needed around it, passed through
``plain`` first, which backslash-escapes every markdown and HTML character. Nothing here uses
``unsafe_allow_html``.
"""

from __future__ import annotations

import re

import streamlit as st

from audit.errors import InputError
from audit.images import ImageLoadError
from audit.settings import Settings
from audit.thumbnails import GRID_SIZE, thumbnail

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&\"'=^])")


def plain(text: object) -> str:
    """``text`` made inert for Streamlit markdown: every special character is escaped and
    line breaks become spaces, so it renders exactly as written."""
    flat = " ".join(str(text).splitlines())
    return _MARKDOWN_SPECIALS.sub(r"\\\1", flat)


def chart_text(text: object) -> str:
    """``text`` for a plotly label or hover: its tag brackets become entities, so plotly's
    small HTML subset (<b>, <a> ...) shows as written instead of being applied."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sample_image(settings: Settings, root: str, row, size: int = GRID_SIZE,
                 width: int | str = "stretch") -> None:
    """The sample's cached thumbnail, or the reason there is none, as plain text."""
    if isinstance(row.load_error, str):
        st.text(f"unreadable: {row.load_error}")
        return
    try:
        path = thumbnail(settings, root, row.path, row.sha256, size)
    except (ImageLoadError, InputError) as exc:
        st.text(f"no preview: {exc}")
        return
    st.image(str(path), width=width)


def label_lines(row) -> None:
    """Given label, suggested label and standing decision of a sample, as plain text."""
    st.text(f"label: {row.label}")
    suggested = getattr(row, "suggested_label", None)
    if isinstance(suggested, str):
        st.text(f"suggested: {suggested}")
    decision = getattr(row, "decision", None)
    if isinstance(decision, str):
        target = f" -> {row.decision_label}" if isinstance(row.decision_label, str) else ""
        st.text(f"decided: {decision}{target}")


def flag_line(flagged_by: list[str], scores: dict[str, float]) -> None:
    """Which detectors flagged the sample, each with its score (lower = worse)."""
    if not flagged_by:
        st.caption("not flagged")
        return
    parts = [f"{name} {scores[name]:.2f}" for name in flagged_by if name in scores]
    st.caption(plain(", ".join(parts)))
