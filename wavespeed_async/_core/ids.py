"""Task ids and other server-given text: checked at the boundary, never trusted as paths.

A task id is data. It is put into a URL path and into file names, so it is accepted only
when it matches :data:`TASK_ID_PATTERN`: 1 to 128 characters from ``A-Z a-z 0-9 _ -``
(the API's ids are 32 hex characters; uuid-like ids fit too). An id from the server that
does not match makes the answer undecodable (:class:`~wavespeed_async.DecodeError`); an id
passed by a caller that does not match is a :class:`~wavespeed_async.ValidationError`.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.text import printable

__all__ = ["MAX_TASK_ID_LENGTH", "TASK_ID_PATTERN", "TaskId", "check_task_id", "is_task_id"]

#: The longest task id accepted.
MAX_TASK_ID_LENGTH: Final = 128
#: What a task id may look like (anchored: ``\Z``, unlike ``$``, allows no trailing newline).
TASK_ID_PATTERN: Final = f"^[A-Za-z0-9_-]{{1,{MAX_TASK_ID_LENGTH}}}\\Z"
_TASK_ID_RE: Final = re.compile(TASK_ID_PATTERN)
_ALLOWED: Final = f"1 to {MAX_TASK_ID_LENGTH} characters from A-Z a-z 0-9 _ -"

#: A task id field of a wire model: decoding fails (``msgspec.ValidationError``, a
#: ``msgspec.DecodeError``) unless the server's id matches :data:`TASK_ID_PATTERN`.
TaskId = Annotated[str, msgspec.Meta(pattern=TASK_ID_PATTERN)]


def is_task_id(value: object) -> bool:
    """Whether ``value`` is a well-formed task id."""
    return isinstance(value, str) and _TASK_ID_RE.match(value) is not None


def check_task_id(value: object, field: str = "task_id") -> str:
    """Return ``value`` if it is a well-formed task id, else raise ValidationError."""
    if isinstance(value, str) and _TASK_ID_RE.match(value) is not None:
        return value
    shown = printable(repr(value), limit=60)
    raise ValidationError(
        field, f"{field}: {shown} is not a task id; allowed: {_ALLOWED}", allowed=_ALLOWED
    )
