"""Reading a jobs file: one JSON object of inputs per line, optionally with its own model."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.requests import UnknownFieldWarning, validate_input, validate_model_path
from wavespeed_async._http.media import image_kind

__all__ = [
    "LOCAL_FILE_URL",
    "NO_MODEL",
    "Job",
    "LocalFile",
    "check_fields",
    "image_kind",
    "inputs_as_sent",
    "is_url",
    "media_keys",
    "parse_jobs",
    "resolve_media",
]

#: The error of a line that names no model when no ``--model`` is given.
NO_MODEL: Final = 'no model: add "model": "owner/model" to the line, or pass --model'

#: What a job's local file stands for before it is uploaded (in a check or a quote): a URL
#: that names no host, and never drives a price.
LOCAL_FILE_URL: Final = "https://upload.invalid/local-file"

#: Prefixes of values that are already remote (or inline) media, never local paths.
_REMOTE: Final = ("http://", "https://", "data:")

#: The largest local file a job may upload: the API takes about 300 MB (larger media are
#: passed as URLs), and the bytes are read into memory once per batch.
MAX_UPLOAD_BYTES: Final = 300 * 1000 * 1000


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """An fd for reading ``path`` and its stat, without blocking on a FIFO or a device.

    ``O_NONBLOCK`` guards against a FIFO or a device put where a file was.

    Raises:
        OSError: It cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        return fd, os.fstat(fd)
    except OSError:
        os.close(fd)
        raise


def _content_problem(key: str, shown: str, size: int, head: bytes) -> str | None:
    """Why a local file of ``size`` bytes starting with ``head`` may not be uploaded."""
    if size > MAX_UPLOAD_BYTES:
        return (
            f"{key}: {shown!r} is larger than {MAX_UPLOAD_BYTES:,} bytes; allowed: a smaller "
            "file, or an http(s) URL to it"
        )
    if image_kind(head) is None:
        return f"{key}: {shown!r} is not an image; allowed: a PNG, JPEG, WebP or GIF file"
    return None


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A local input file as it was when the jobs file was read.

    Its resolved path and the identity (device, inode) of the file found there.
    """

    path: Path
    device: int
    inode: int

    def read(self, key: str) -> bytes:
        """The file's bytes, only if the path still leads to that same file.

        A file swapped since the jobs file was read (for a link, or another file moved
        over it, anywhere along the path) is refused: the check and the read go through
        one open file, so what is uploaded is what was checked.

        Raises:
            ValidationError: The file is gone, is another file now, or is no image.
        """
        shown = str(self.path)
        try:
            fd, st = _open_regular(self.path)
            with os.fdopen(fd, "rb") as f:
                found = (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None
                if found != (self.device, self.inode):
                    raise ValidationError(
                        key,
                        f"{key}: {shown!r} is another file than when the jobs file was read "
                        "(replaced or linked elsewhere since); not uploaded",
                    )
                data = f.read(MAX_UPLOAD_BYTES + 1)
        except OSError as exc:
            raise ValidationError(
                key, f"{key}: cannot read {shown!r}: {exc.strerror or exc}"
            ) from None
        problem = _content_problem(key, shown, len(data), data[:12])
        if problem is not None:
            raise ValidationError(key, problem)
        return data


@dataclass(frozen=True, slots=True)
class Job:
    """One line of a jobs file.

    Attributes:
        line: The 1-based line number in the file.
        model: The model path (the line's ``"model"``, else ``--model``).
        inputs: The inputs, without ``"model"``; local media paths not yet uploaded.
        hash: A hash of the job's content: the model and the inputs (whitespace and key
            order do not matter). The journal uses it to notice an edited file.
        error: Why the line cannot run (``None`` when it can).
        local_media: Input keys whose values are local files, as found when read.
        warnings: Fields the model does not take (the API ignores them): one message each.
    """

    line: int
    model: str | None
    inputs: dict[str, Any]
    hash: str
    error: str | None = None
    local_media: dict[str, list[LocalFile]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def check_fields(model: str, inputs: dict[str, Any]) -> list[str]:
    """Check inputs as the client will (raises ValidationError); return the warnings' messages.

    The messages are those of each :class:`UnknownFieldWarning` (misspelt or unknown fields
    of a known model).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownFieldWarning)
        validate_input(model, inputs)
    return [str(w.message) for w in caught if issubclass(w.category, UnknownFieldWarning)]


def is_url(value: str) -> bool:
    return value.startswith(_REMOTE)


def inputs_as_sent(job: Job) -> dict[str, Any]:
    """A job's inputs as they will be sent, each local file standing as a URL."""
    inputs = dict(job.inputs)
    for key in job.local_media:
        value = inputs[key]
        if isinstance(value, list):
            inputs[key] = [
                v if not isinstance(v, str) or is_url(v) else LOCAL_FILE_URL for v in value
            ]
        else:
            inputs[key] = LOCAL_FILE_URL
    return inputs


def media_keys(inputs: dict[str, Any]) -> list[str]:
    """The input keys that hold media: ``image``/``images`` and ``*_image``/``*_images``."""
    return [
        k
        for k in inputs
        if k in ("image", "images")
        or (k.endswith(("_image", "_images")) and not k.startswith("num_"))
    ]


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def content_hash(model: str | None, inputs: dict[str, Any]) -> str:
    """The hash of a job's content (canonical JSON of the model and the inputs)."""
    canonical = json.dumps(
        {"model": model, "inputs": inputs}, sort_keys=True, separators=(",", ":")
    )
    return _digest(canonical)


def check_local_image(
    key: str, shown: str, path: Path, base: Path, any_path: bool
) -> LocalFile | str:
    """The file at ``path`` (resolved) if it may be uploaded, else why not."""
    if not any_path and not path.is_relative_to(base):
        return (
            f"{key}: {shown!r} is outside the jobs file's folder {str(base)!r} (after "
            "following links); allowed: a file inside that folder, or pass --allow-any-path"
        )
    try:
        fd, st = _open_regular(path)
        with os.fdopen(fd, "rb") as f:
            head = f.read(12) if stat.S_ISREG(st.st_mode) else b""
    except OSError as exc:
        return f"{key}: cannot read {shown!r}: {exc.strerror or exc}"
    problem = _content_problem(key, shown, st.st_size, head)
    return problem if problem is not None else LocalFile(path, st.st_dev, st.st_ino)


def resolve_media(
    inputs: dict[str, Any], base: Path, *, allow_any_path: bool = False
) -> tuple[dict[str, list[LocalFile]], str | None]:
    """Find the local files among the media inputs (relative paths: relative to ``base``).

    A local file must be an image (PNG, JPEG, WebP or GIF by its leading bytes) and, unless
    ``allow_any_path``, lie inside ``base`` once links are followed: uploaded files become
    public URLs.

    Returns:
        The local files by key, and an error message if a value is neither a URL nor an
        existing file, or a file that may not be uploaded.
    """
    base = base.resolve()
    local: dict[str, list[LocalFile]] = {}
    for key in media_keys(inputs):
        value = inputs[key]
        values = value if isinstance(value, list) else [value]
        paths: list[LocalFile] = []
        for v in values:
            if not isinstance(v, str) or is_url(v):
                continue  # not media we could upload: the model's checks decide
            p = Path(v).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                return {}, (
                    f"{key}: no such file {v!r} (relative paths are relative to the jobs "
                    f"file's folder, {str(base)!r}); allowed: an http(s) URL or a local file"
                )
            found = check_local_image(key, v, p.resolve(), base, allow_any_path)
            if isinstance(found, str):
                return {}, found
            paths.append(found)
        if paths:
            local[key] = paths
    return local, None


def _parse_line(
    number: int, text: str, default_model: str | None, base: Path, allow_any_path: bool
) -> Job:
    raw_hash = _digest(text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Job(number, None, {}, raw_hash, f"not valid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(obj, dict):
        return Job(
            number, None, {}, raw_hash,
            f"expected a JSON object of inputs, got a JSON {type(obj).__name__}",
        )  # fmt: skip
    model = obj.pop("model", None)
    if model is None:
        model = default_model
    if model is None:
        return Job(number, None, obj, raw_hash, NO_MODEL)
    job_hash = content_hash(model, obj)
    try:
        model = validate_model_path(model)
        notes = tuple(check_fields(model, obj))
    except ValidationError as exc:
        return Job(number, model if isinstance(model, str) else None, obj, job_hash, str(exc))
    local, problem = resolve_media(obj, base, allow_any_path=allow_any_path)
    if problem is not None:
        return Job(number, model, obj, job_hash, problem)
    return Job(number, model, obj, job_hash, None, local, notes)


def parse_jobs(
    text: str, *, default_model: str | None, base: Path, allow_any_path: bool = False
) -> list[Job]:
    """Parse a jobs file's text; blank lines are skipped (they keep their numbers).

    Every non-blank line becomes a Job; a line that cannot run has ``error`` set, and
    does not stop the others. Local images must lie in ``base`` (the jobs file's folder)
    unless ``allow_any_path`` (see :func:`resolve_media`).
    """
    jobs: list[Job] = []
    text = text.removeprefix("\ufeff")
    # Split on "\n" only, so that numbers match what an editor shows.
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        jobs.append(_parse_line(number, stripped, default_model, base, allow_any_path))
    return jobs
