"""The class order: which class is index k of the labels and column k of pred_probs.

This is the one place that decides it; the plan, the ``order`` command and the dashboard all
call ``class_order``. Labels that all read as numbers sort as numbers ("2" before "10"); any
other set of labels sorts as text. A user may give the order explicitly (``--class-order``),
and that order wins once it is checked against the labels of the data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

from audit.errors import ConfigError, InputError


def class_order(labels: Iterable[object], explicit: Sequence[str] | None = None) -> list[str]:
    """The classes of ``labels`` in column order: ``explicit`` when given (checked), else
    numeric order when every label is a number, else text order."""
    present = {str(label) for label in labels}
    if explicit is None:
        return natural_order(present)
    check_explicit_order(explicit, present)
    return [str(name) for name in explicit]


def natural_order(names: Iterable[str]) -> list[str]:
    """Integers sort as integers, finite decimals as numbers, anything else as text."""
    names = sorted(set(names))
    for parse in (int, float):
        numbers = _parse_all(names, parse)
        if numbers is not None:
            return [name for _, name in sorted(zip(numbers, names))]
    return names


def _parse_all(names: list[str], parse) -> list[float] | None:
    """Every name as a number, or None when one does not read as a finite number."""
    numbers = []
    for name in names:
        try:
            number = parse(name.strip())
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        numbers.append(number)
    return numbers


def check_order_names(explicit: object) -> None:
    """An explicit order on its own: a non-empty list of distinct, non-blank class names."""
    if not isinstance(explicit, list) or not explicit:
        raise ConfigError(f"class_order={explicit!r} is not allowed; give a non-empty list of "
                          "class names, one per pred_probs column")
    blank = [i for i, name in enumerate(explicit) if not isinstance(name, str) or not name.strip()]
    if blank:
        raise ConfigError(f"class_order entry {blank[0]} ({explicit[blank[0]]!r}) is not a class "
                          "name; give each class once as non-empty text")
    twice = sorted({name for name in explicit if explicit.count(name) > 1})
    if twice:
        raise ConfigError(f"class_order names {twice} more than once; give each class exactly "
                          "once, in the column order of pred_probs")


def check_explicit_order(explicit: Sequence[str], present: set[str]) -> None:
    """Every label of the data must appear in ``explicit`` exactly once; extra classes (columns
    no sample carries) are allowed."""
    check_order_names(list(explicit))
    missing = natural_order(present - {str(name) for name in explicit})
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(f"class_order leaves out {len(missing)} label(s) of the data: {shown}; "
                          "list every class once (see `python -m audit order DATASET --out DIR`)")


def parse_class_order(text: str) -> list[str]:
    """``--class-order``: a .txt file with one class per line, or a comma-separated list."""
    path = Path(text).expanduser()
    if path.is_file():
        return read_class_order_file(path)
    if path.suffix == ".txt" or "/" in text:
        raise InputError(f"{path}: class order file not found; give a .txt file with one class "
                         "per line, or a comma-separated list of classes")
    return [name.strip() for name in text.split(",") if name.strip()]


def read_class_order_file(path: Path) -> list[str]:
    """One class per line; blank lines are ignored, surrounding spaces stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: class order file is not UTF-8 text ({exc}); save it as "
                         "UTF-8 with one class per line") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: class order file lists no classes; write one class per line")
    return names
