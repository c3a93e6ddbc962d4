"""Whether a schema's ``pattern`` can be run on an input without risk of hanging.

Python's ``re`` backtracks, and has no time limit: a pattern such as ``^(a+)+$`` takes
seconds on thirty characters, and minutes on forty. A catalogue's pattern runs on every
submit, on the event loop, so a pattern whose shape can backtrack without bound is not run
(the field's other constraints still are): a quantified part that holds another
quantifier or an alternation, and back-references.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any, Final

__all__ = ["pattern_problem"]

# The parser ``re`` compiles with: ``re._parser`` from 3.11, ``sre_parse`` before.
_parser: Final[Any] = importlib.import_module(
    "re._parser" if sys.version_info >= (3, 11) else "sre_parse"
)
_REPEATS: Final = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_BACKREFS: Final = frozenset({"GROUPREF", "GROUPREF_EXISTS"})


def pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` is not run on inputs, or ``None`` when it compiles and is safe."""
    if not isinstance(pattern, str):
        return "is not a Python regex"
    try:
        re.compile(pattern)
        parsed = _parser.parse(pattern)
    except (re.error, ValueError, OverflowError, RecursionError):
        return "is not a Python regex"
    try:
        risky = _may_backtrack(parsed, repeated=False)
    except RecursionError:
        risky = True
    return "could backtrack for minutes on some inputs" if risky else None


def _may_backtrack(items: Any, *, repeated: bool) -> bool:
    """Whether a parsed pattern repeats a quantifier or alternation, or refers back."""
    for op, arg in items:
        name = getattr(op, "name", str(op))
        if name in _BACKREFS:
            return True
        if name in _REPEATS:
            _lo, hi, sub = arg
            many = hi > 1  # MAXREPEAT (no upper bound) is a large int
            if many and repeated:
                return True
            if _may_backtrack(sub, repeated=repeated or many):
                return True
        elif name == "BRANCH":
            branches = arg[1]
            if repeated and len(branches) > 1:
                return True
            if any(_may_backtrack(b, repeated=repeated) for b in branches):
                return True
        elif name in ("SUBPATTERN", "ASSERT", "ASSERT_NOT"):
            if _may_backtrack(arg[-1], repeated=repeated):
                return True
        elif name == "ATOMIC_GROUP" and _may_backtrack(arg, repeated=repeated):
            return True
    return False
