"""Small building blocks shared by the pages: escaped text, sample images, the grid card.

Every string that came from a dataset (labels, captions, paths, ids) is untrusted. It is shown
with ``st.text`` (never interpreted) or, where markdown is needed around it, passed through
``plain`` first, which backslash-escapes every markdown and HTML character. Nothing here uses
``unsafe_allow_html``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import streamlit as st
from PIL import Image, ImageOps

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


DECISION_BADGES = {"remove": ("removed", "red", ":material/delete:"),
                   "relabel": ("relabelled to {label}", "blue", ":material/edit:"),
                   "keep": ("kept", "green", ":material/check:")}


def sample_image(settings: Settings, root: str, row, size: int = GRID_SIZE,
                 width: int | str = "stretch", faded: bool = False) -> None:
    """The sample's cached thumbnail (greyed out when ``faded``), or the reason there is none,
    as plain text."""
    if isinstance(row.load_error, str):
        st.text(f"unreadable: {row.load_error}")
        return
    try:
        path = thumbnail(settings, root, row.path, row.sha256, size)
    except (ImageLoadError, InputError) as exc:
        st.text(f"no preview: {exc}")
        return
    st.image(_greyed(path) if faded else str(path), width=width)


def _greyed(path) -> Image.Image:
    """A thumbnail in light grey: how a decided card shows it is done with."""
    with Image.open(path) as image:
        grey = ImageOps.grayscale(image.convert("RGB")).convert("RGB")
    return Image.blend(grey, Image.new("RGB", grey.size, "white"), 0.55)


def file_line(row) -> None:
    """The sample's split and file name (not the whole path), as plain text."""
    st.caption(plain(f"{row.split} · {PurePosixPath(str(row.path)).name}"))


def decision_badge(row) -> None:
    """The standing decision as a coloured badge: removed, relabelled to X, kept."""
    decision = getattr(row, "decision", None)
    if decision not in DECISION_BADGES:
        return
    text, color, icon = DECISION_BADGES[decision]
    st.badge(plain(text.format(label=row.decision_label)), color=color, icon=icon)


def label_lines(row) -> None:
    """Given label, suggested label and standing decision of a sample: one plain-text element,
    a line each (a card draws few elements, so a page of cards draws fast)."""
    lines = [f"label: {_one_line(row.label)}"]
    suggested = getattr(row, "suggested_label", None)
    if isinstance(suggested, str):
        lines.append(f"suggested: {_one_line(suggested)}")
    decision = getattr(row, "decision", None)
    if isinstance(decision, str):
        target = (f" -> {_one_line(row.decision_label)}" if isinstance(row.decision_label, str)
                  else "")
        lines.append(f"decided: {decision}{target}")
    st.text("\n".join(lines))


def _one_line(text: object) -> str:
    """A dataset string on one line, so it can never pass for a line of its own."""
    return " ".join(str(text).splitlines())


def why_lines(row, flagged_by: list[str], scores: dict[str, float]) -> None:
    """Which detectors flagged the sample, each with its score (lower = worse), then the worst
    one's reason in words: one caption, a line each."""
    if not flagged_by:
        st.caption("not flagged")
        return
    lines = [plain(", ".join(f"{name} {scores[name]:.2f}" for name in flagged_by
                             if name in scores))]
    reason = getattr(row, "top_reason", None)
    if isinstance(reason, str):
        lines.append(plain(f"{row.reason_detector}: {reason}"))
    st.caption("  \n".join(lines))
