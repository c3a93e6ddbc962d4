"""Finding the task of a submit whose answer was lost, in the account's history (pure).

A submit whose answer never came (:class:`~wavespeed_async.SubmissionOutcomeUnknown`) may
or may not have created a task. The history (``POST /api/v3/predictions``) lists the
account's tasks; :func:`match` looks there for each lost submit:

* only tasks of the **same model**, created **in the submit's time window** (from when it
  was sent to when its answer was given up, widened by ``slack_s`` either side for the
  clocks of client and server), and not already known (``exclude``) or taken by another
  lost submit;
* when the history echoes the task's input: a task whose input **agrees with the input
  sent** on every key both have (numbers compared by value); the API drops keys it does
  not know and may add defaults, so only common keys are compared, and one at least must
  be common. Of several, the one that agrees on most keys, then the closest in time;
* when it does not echo inputs: the model and the window alone, and only when that is
  unambiguous (one candidate task, wanted by no other lost submit).

A lost submit with no such task stays unknown: it may never have reached the server, or
its task may be older than the history (about 7 days).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import msgspec

from wavespeed_async._core.spend import HistoryEntry, parse_time

__all__ = ["DEFAULT_SLACK_S", "DEFAULT_WINDOW_S", "LostSubmit", "Reconciled", "match"]

#: Added either side of a submit's window: clocks of client and server may disagree.
DEFAULT_SLACK_S: Final = 120.0
#: A submit's window when the time its answer was given up is not known.
DEFAULT_WINDOW_S: Final = 900.0


class LostSubmit(msgspec.Struct, frozen=True):
    """A submit whose answer was lost: what was sent, and when.

    Attributes:
        model: The model id.
        input: The body that was sent.
        sent_at: Unix seconds when it was sent.
        lost_at: Unix seconds when its answer was given up (``None``: unknown; the window
            is then ``DEFAULT_WINDOW_S`` long).
    """

    model: str
    input: dict[str, Any]
    sent_at: float
    lost_at: float | None = None

    def window(self, slack_s: float) -> tuple[float, float]:
        """Unix seconds between which its task, if any, was created."""
        end = self.lost_at if self.lost_at is not None else self.sent_at + DEFAULT_WINDOW_S
        return self.sent_at - slack_s, max(end, self.sent_at) + slack_s


class Reconciled(msgspec.Struct, frozen=True):
    """What the history says about one lost submit.

    Attributes:
        submit: The lost submit.
        task_id: Its task, or ``None`` (it stays unknown).
        entry: The task's history entry, when found.
        matched_on: ``"input"``, ``"model_and_time"`` or ``None``.
    """

    submit: LostSubmit
    task_id: str | None = None
    entry: HistoryEntry | None = None
    matched_on: str | None = None

    @property
    def found(self) -> bool:
        """Whether the submit's task was found."""
        return self.task_id is not None


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            return ("n", str(Decimal(str(value)).normalize()))
        except ArithmeticError:
            return ("n", repr(value))
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return repr(value)


def agreement(sent: Mapping[str, Any], echoed: Mapping[str, Any]) -> int:
    """How many keys ``sent`` and ``echoed`` share, all with equal values.

    -1 if any common key differs, 0 if none is common.
    """
    common = sent.keys() & echoed.keys()
    for key in common:
        if _canonical(sent[key]) != _canonical(echoed[key]):
            return -1
    return len(common)


def match(
    submits: Sequence[LostSubmit],
    entries: Iterable[HistoryEntry],
    *,
    exclude: Iterable[str] = (),
    slack_s: float = DEFAULT_SLACK_S,
) -> list[Reconciled]:
    """Each lost submit's task among the history ``entries`` (see the module's rules).

    In the order of ``submits``; no task is given to two submits.
    """
    taken = set(exclude)
    timed: list[tuple[HistoryEntry, float]] = []
    for e in entries:
        when = parse_time(e.created_at)
        if when is not None and e.id not in taken:
            timed.append((e, when.timestamp()))
    found: dict[int, Reconciled] = {}
    unechoed: dict[int, list[HistoryEntry]] = {}
    for i in sorted(range(len(submits)), key=lambda i: submits[i].sent_at):
        s = submits[i]
        start, end = s.window(slack_s)
        near = [(e, t) for e, t in timed if e.model == s.model and start <= t <= end]
        best: tuple[int, float, HistoryEntry] | None = None
        for e, t in near:
            if e.input is None or e.id in taken:
                continue
            score = agreement(s.input, e.input)
            if score > 0:
                rank = (score, -abs(t - s.sent_at), e)
                if best is None or rank[:2] > best[:2]:
                    best = rank
        if best is not None:
            taken.add(best[2].id)
            found[i] = Reconciled(s, best[2].id, best[2], "input")
        else:
            unechoed[i] = [e for e, _ in near if e.input is None]
    # Model and time alone: only a candidate that is this submit's alone, and alone.
    for i, candidates in unechoed.items():
        free = [e for e in candidates if e.id not in taken]
        if len(free) != 1:
            continue
        wanted = sum(1 for j, c in unechoed.items() if j != i and free[0] in c)
        if wanted == 0:
            taken.add(free[0].id)
            found[i] = Reconciled(submits[i], free[0].id, free[0], "model_and_time")
    return [found.get(i, Reconciled(s)) for i, s in enumerate(submits)]
