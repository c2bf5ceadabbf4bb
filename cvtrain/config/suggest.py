"""Nearest valid names for a misspelt key, group or option: every "did you mean ...?" hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, names: Iterable[str], prefix: str = "") -> str:
    """'did you mean X?' for the closest of `names` (difflib), '' when none is close. A second
    name is offered only when about as close (`modle`: mode or model), never as filler."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, name, word).ratio(), name) for name in set(names)),
        reverse=True,
    )
    best = scored[0][0] if scored else 1.0
    close = [name for score, name in scored[:2] if score >= max(0.6, best - 0.1)]
    return f"did you mean {' or '.join(prefix + name for name in close)}?" if close else ""
