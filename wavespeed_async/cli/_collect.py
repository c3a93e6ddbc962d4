"""Collecting the tasks of an earlier run, each checked to be the job of its journaled line.

A task id is the server's word. A server that hands out an id again (an emulator that was
restarted with the same seed, another server behind the same URL) would answer a
journaled id with another job's task, and its images would be saved as this line's. So a
collected task is checked against the line's job first: its model, and its prompt when the
server echoes the inputs. A mismatch is reported and recorded as the line's failure; the
other job's outputs are never saved.
"""

from __future__ import annotations

from typing import Any

from wavespeed_async._core.models import Prediction
from wavespeed_async._core.text import printable
from wavespeed_async.cli._jobs import Job

__all__ = ["foreign_task"]


def _same_model(ours: str, theirs: str) -> bool:
    a, b = ours.strip("/").lower(), theirs.strip("/").lower()
    # A server may name a model with or without its owner: "x/y" is "owner/x/y".
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def foreign_task(job: Job, pred: Prediction) -> str | None:
    """Why ``pred`` is not the task of ``job`` (another model or prompt), or ``None``.

    Only what the server states is compared: a task without a model name, or without an
    echo of its inputs, is taken as this job's.
    """
    theirs = pred.model
    if job.model and theirs and not _same_model(job.model, theirs):
        return (
            f"task {pred.id} answers with model {printable(theirs, limit=200)!r}, not this "
            f"line's {job.model!r}"
        )
    echoed: Any = pred.input
    ours = job.inputs.get("prompt")
    prompt = echoed.get("prompt") if isinstance(echoed, dict) else None
    if isinstance(ours, str) and isinstance(prompt, str) and prompt != ours:
        return (
            f"task {pred.id} answers with another prompt "
            f"({printable(prompt, limit=80)!r}), not this line's"
        )
    return None
