"""CSV manifests that a spreadsheet will not run and that every CSV reader splits the same way.

- Every text cell and column name is quoted, so a comma, a quote, a line break or a lone
  carriage return inside a value never starts a new field or row; numbers are written bare
  and stay numbers.
- A text cell or column name that starts with ``=``, ``+``, ``-``, ``@``, a tab, a carriage
  return or ``'`` gets one ``'`` in front, so a spreadsheet shows it as text instead of
  running it as a formula; text that is a plain number (``-1``, ``+2.5``, ``-1e3``) is left
  alone. To get the original text back, drop one leading ``'`` from any text cell that starts
  with ``'``. Parquet and JSONL are written without this rule and keep every value exactly.
"""

from __future__ import annotations

import csv
import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def spreadsheet_safe(text: str) -> str:
    """``text`` with one ``'`` in front when a spreadsheet could read it as a formula."""
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` to a new CSV file at ``path`` by the rules above."""
    safe = frame.rename(columns=lambda name: spreadsheet_safe(str(name)))
    for position, dtype in enumerate(safe.dtypes):
        if not pd.api.types.is_numeric_dtype(dtype):
            safe.isetitem(position, safe.iloc[:, position].map(_safe_cell))
    safe.to_csv(path, index=False, encoding="utf-8", mode="x", quoting=csv.QUOTE_NONNUMERIC)


def _safe_cell(value):
    return spreadsheet_safe(value) if isinstance(value, str) else value
