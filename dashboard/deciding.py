"""Recording decisions from a page: who decides (a name in the sidebar, the OS user until
changed), the one call every decision button makes, and the message it leaves for the page.

Decision buttons record in their ``on_click`` callback, with the id of each sample's latest log
row as the page showed it (``seen``). A callback runs before the page is drawn again, so a
decision another tab or author wrote in between is caught by the store (``DecisionConflict``)
and shown, never silently replaced; the next run of the page reads the log afresh.
"""

from __future__ import annotations

import streamlit as st

from audit.errors import AuditError
from audit.store import Store
from audit.store import flags
from audit.store.flags import Decision, default_author, latest_flag_ids, record_decisions
from dashboard.errors import show_error
from dashboard.widgets import plain

AUTHOR_KEY = "author"
OUTCOME_KEY = "decision_outcome"
TRAIL_KEY = "review_trail"      # (sample id, log row id) of this tab's single decisions, not undos
TRAIL_LENGTH = 200


def author_input() -> None:
    """The sidebar's name for this tab's decisions, kept for the session."""
    st.sidebar.text_input("Deciding as", value=default_author(), key=AUTHOR_KEY,
                          persist_state="session",
                          help="Recorded with every decision you make (the OS user by default)")


def author() -> str:
    name = str(st.session_state.get(AUTHOR_KEY) or "").strip()
    return name or default_author()


def decide(store: Store, dataset_id: int, decisions: list[Decision],
           seen: dict[str, int | None] | None = None) -> bool:
    """Record the decisions as this tab's author; leave what happened for ``show_outcome``.
    False when the store refused them (a conflict, an unknown sample)."""
    try:
        record_decisions(store, dataset_id, decisions, author=author(), seen=seen)
    except AuditError as exc:
        st.session_state[OUTCOME_KEY] = ("error", str(exc))
        return False
    tell(_summary(decisions))
    if len(decisions) == 1 and decisions[0].action != "undo":
        _remember(store, dataset_id, decisions[0].sample_id)
    return True


def undo_last_bulk(store: Store, dataset_id: int) -> None:
    undone = flags.undo_last_bulk(store, dataset_id, author=author())
    tell(f"bulk action undone on {undone} samples" if undone else "no bulk action left to undo")


def tell(message: str) -> None:
    """Leave a message for ``show_outcome`` (from a callback, before the page is drawn)."""
    st.session_state[OUTCOME_KEY] = ("done", message)


def _summary(decisions: list[Decision]) -> str:
    action = decisions[0].action
    if len(decisions) > 1:
        return f"{action}: {len(decisions)} samples"
    return f"{action} recorded"


def _remember(store: Store, dataset_id: int, sample_id: str) -> None:
    row_id = latest_flag_ids(store, dataset_id, [sample_id]).get(sample_id)
    trail = st.session_state.setdefault(TRAIL_KEY, [])
    trail.append((sample_id, row_id))
    del trail[:-TRAIL_LENGTH]


def forget(sample_id: str) -> None:
    """Take a sample off the trail (its decision was withdrawn where it is shown)."""
    trail = st.session_state.get(TRAIL_KEY) or []
    trail[:] = [entry for entry in trail if entry[0] != sample_id]


def last_decided() -> tuple[str, int | None] | None:
    """This tab's latest single decision (sample id, its log row id), taken off the trail."""
    trail = st.session_state.get(TRAIL_KEY) or []
    return trail.pop() if trail else None


def show_outcome() -> None:
    """The result of the decision just made: a toast, or the store's refusal in red."""
    kind, text = st.session_state.pop(OUTCOME_KEY, (None, None))
    if kind == "error":
        show_error(AuditError(text))
    elif kind == "done":
        st.toast(plain(text))
