"""A gallery page of a batch: one static ``index.html`` beside the images, to look at.

::

    from wavespeed_async.gallery import write_gallery

    async with client.run_many(model, inputs) as run:
        async for r in run:
            if r.ok and r.prediction is not None:
                await client.download(r.prediction, "out")
            results.append(r)
    write_gallery("out", results, title="Lighthouses")   # -> out/index.html

The page is one self-contained file: no network (a Content-Security-Policy forbids any
load but the images in its folder), no JavaScript (filtering by status is plain CSS), and
``loading="lazy"`` images, so a batch of 10,000 jobs opens at once. It shows every job in
order: its image(s), prompt, model, task id and inference time, or its error in place of
the image; a header gives the counts, the cost, the wall time and the command. An edit job's input
image is shown beside its output, when it is a file in the folder (the command line links
or copies each local input into ``inputs/``); an input given as a URL is linked, never
loaded.

Everything that comes from a job file or a server (prompts, errors, ids, models, file
names) is escaped: a prompt ``<img src=x onerror=alert(1)>`` is shown as text. Image links
are relative, URL-quoted, and never leave the folder: a file name that is absolute or
climbs out (``..``) is not linked. The page is written atomically (a temporary file, then
``os.replace``), so a browser never sees half of it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from wavespeed_async._core.errors import SubmissionOutcomeUnknown, TaskFailedError
from wavespeed_async._core.money import format_usd
from wavespeed_async._facade.bulk import BulkResult

__all__ = ["INDEX_NAME", "GalleryItem", "input_urls", "render_gallery", "write_gallery"]

#: The page's file name inside the folder.
INDEX_NAME: Final = "index.html"

#: Statuses, in the order the header counts them, with the CSS class of their cards:
#: ``ok`` (completed), ``bad`` (ended without outputs), ``open`` (may still finish).
STATUS_CLASS: Final = {
    "completed": "ok",
    "failed": "bad",
    "invalid": "bad",
    "unknown": "open",
    "incomplete": "open",
    "not_submitted": "open",
}

#: ``{task_id}_{n}{ext}``: the names :meth:`Client.download` gives by default.
_DOWNLOADED: Final = re.compile(r"^(?P<task>.+)_(?P<n>\d+)(?P<ext>\.[A-Za-z0-9]{1,8})$")


@dataclass(frozen=True, slots=True)
class GalleryItem:
    """One job on the page.

    Attributes:
        number: The job's 1-based number: its line in a jobs file, or its index + 1.
        status: ``completed``, ``failed``, ``invalid``, ``unknown``, ``incomplete`` or
            ``not_submitted`` (another word is shown as it is, as not finished).
        files: The job's output files, relative to the page's folder (``a.png``,
            ``sub/a.png``); shown in this order.
        prompt: The job's prompt, if it has one.
        model: The model path.
        task_id: The task id, once a task exists.
        inference_ms: The server's inference time.
        error: Why the job has no image (shown in its place).
        inputs: The job's input images: files relative to the page's folder (shown before
            the outputs, marked "input"), or http(s) URLs (linked, not loaded: the page
            loads nothing from the network).
        cost_usd: What the job cost (a ``Decimal``), when known; the header shows the sum.
    """

    number: int
    status: str
    files: Sequence[str] = field(default_factory=tuple)
    prompt: str | None = None
    model: str | None = None
    task_id: str | None = None
    inference_ms: float | None = None
    error: str | None = None
    cost_usd: Decimal | None = None
    inputs: Sequence[str] = field(default_factory=tuple)


def safe_href(name: str) -> str | None:
    """A relative URL to the file ``name`` inside the folder, or ``None`` if it would leave it.

    ``name`` must be a relative path of plain parts (no ``..``, ``.``, empty part, backslash
    or NUL); every part is URL-quoted, so ``javascript:x`` becomes the file ``javascript%3Ax``.
    """
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(quote(p, safe="") for p in parts)


# -- from run_many results ----------------------------------------------------------------


def _prompt_of(value: Any) -> str | None:
    prompt = value.get("prompt") if isinstance(value, Mapping) else getattr(value, "prompt", None)
    return prompt if isinstance(prompt, str) else None


def _is_media_key(key: str) -> bool:
    return key in ("image", "images") or (
        key.endswith(("_image", "_images")) and not key.startswith("num_")
    )


def input_urls(value: Any) -> list[str]:
    """The http(s) URLs among a job's media inputs (``image``, ``images``, ``*_image``...)."""
    if isinstance(value, Mapping):
        fields: Mapping[str, Any] = value
    else:
        to_input = getattr(value, "to_input", None)  # a typed request
        fields = to_input() if callable(to_input) else {}
    urls = []
    for key, given in fields.items():
        if not isinstance(key, str) or not _is_media_key(key):
            continue
        values = given if isinstance(given, list) else [given]
        urls += [v for v in values if isinstance(v, str) and v.startswith(("http://", "https://"))]
    return urls


def _downloaded_files(directory: Path) -> dict[str, list[tuple[int, str]]]:
    """The files in ``directory`` named as :meth:`Client.download` names them, by task id."""
    found: dict[str, list[tuple[int, str]]] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        m = _DOWNLOADED.match(name)
        if m is not None:
            found.setdefault(m["task"], []).append((int(m["n"]), name))
    return found


def item_from_result(
    r: BulkResult[Any], files: Mapping[str, list[tuple[int, str]]], model: str | None = None
) -> GalleryItem:
    """A :class:`GalleryItem` for a ``run_many``/``wait_many`` result.

    ``files``: the downloaded outputs by task id (see :func:`write_gallery`).
    """
    pred = r.prediction
    error = r.error
    names = [n for _, n in sorted(files.get(r.id, []))] if r.id is not None else []
    text = str(error) if error is not None else None
    if r.ok:
        status = "completed"
        if not names:
            text = f"{len(r.outputs)} output(s), not saved in this folder"
    elif isinstance(error, TaskFailedError):
        status = "failed"
    elif isinstance(error, SubmissionOutcomeUnknown):
        status = "unknown"
    elif r.id is not None:  # the task exists and did not end here (a timeout)
        status = "incomplete"
    else:  # refused before any task existed
        status = "failed"
    return GalleryItem(
        number=r.index + 1,
        status=status,
        files=names,
        prompt=_prompt_of(r.input),
        model=(pred.model if pred is not None and pred.model else None) or model,
        task_id=r.id,
        inference_ms=pred.inference_ms if pred is not None else None,
        error=text,
        cost_usd=r.cost_usd,
        inputs=input_urls(r.input),
    )


# -- the page ------------------------------------------------------------------------------

_CSS: Final = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#f4f4f5;color:#18181b}
header{padding:16px 20px;background:#fff;border-bottom:1px solid #ddd}
h1{margin:0 0 6px;font-size:20px}
.counts span{margin-right:14px}
code{font:12px ui-monospace,monospace;word-break:break-all}
.cmd{margin:6px 0 0;color:#444}
.filters{padding:12px 20px 0}
.vh{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);
white-space:nowrap;border:0;padding:0}
.filters label{display:inline-block;padding:3px 10px;margin-right:6px;border:1px solid #bbb;
border-radius:14px;cursor:pointer;background:#fafafa}
#f-all:checked~.filters label[for=f-all],#f-ok:checked~.filters label[for=f-ok],
#f-bad:checked~.filters label[for=f-bad],#f-open:checked~.filters label[for=f-open]
{background:#18181b;color:#fff;border-color:#18181b}
#f-all:focus-visible~.filters label[for=f-all],#f-ok:focus-visible~.filters label[for=f-ok],
#f-bad:focus-visible~.filters label[for=f-bad],#f-open:focus-visible~.filters label[for=f-open]
{outline:2px solid #2563eb;outline-offset:2px}
#f-ok:checked~main .c:not(.ok),#f-bad:checked~main .c:not(.bad),
#f-open:checked~main .c:not(.open){display:none}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:14px;
padding:16px 20px}
.c{background:#fff;border:1px solid #ddd;border-radius:8px;padding:8px;overflow:hidden;
content-visibility:auto;contain-intrinsic-size:auto 360px}
.im{display:flex;gap:4px;height:240px;align-items:center;justify-content:center;
background:#eee;border-radius:4px}
.im a{flex:1;min-width:0;height:100%}
.im img{width:100%;height:100%;object-fit:contain;display:block}
.im .in{position:relative;flex:0 1 40%;border-right:2px solid #fff;opacity:.92}
.im .in::after{content:"input";position:absolute;left:4px;top:4px;padding:0 5px;
border-radius:3px;background:#18181bcc;color:#fff;font-size:11px}
.e{height:240px;overflow:auto;padding:10px;border-radius:4px;background:#fef2f2;
color:#991b1b;white-space:pre-wrap;word-break:break-word}
.open .e{background:#fefce8;color:#854d0e}
.p{margin:8px 0 4px;display:-webkit-box;-webkit-line-clamp:4;-webkit-box-orient:vertical;
overflow:hidden;white-space:pre-wrap;word-break:break-word}
.m{color:#555;font-size:12px}
.s{font-weight:600;text-transform:uppercase;font-size:11px}
.ok .s{color:#15803d}.bad .s{color:#b91c1c}.open .s{color:#a16207}
"""

# No script at all, and nothing but the folder's own images may load.
_CSP: Final = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'"


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    return f" · {ms:.0f} ms" if ms < 1000 else f" · {ms / 1000:.1f} s"


#: The ``user:password@`` of a URL anywhere in a text.
_CREDENTIALS: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/@]+@")


def without_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    A page is shared more widely than the command line that made it.
    """
    return _CREDENTIALS.sub(r"\1***@", text)


def _image_links(names: Sequence[str], alt: str, css: str = "") -> list[str]:
    links = []
    cls = f' class="{css}"' if css else ""
    for k, name in enumerate(names, 1):
        href = safe_href(name)
        if href is not None:
            links.append(
                f'<a{cls} href="{href}"><img src="{href}" loading="lazy" alt="{alt} {k}"></a>'
            )
    return links


def _remote(url: str) -> str | None:
    """An http(s) URL as an attribute value, or ``None`` for anything else."""
    if not url.startswith(("http://", "https://")) or any(c in url for c in "\x00\r\n"):
        return None
    return escape(without_credentials(url), quote=True)


def _card(item: GalleryItem, numbering: str) -> str:
    kind = STATUS_CLASS.get(item.status, "open")
    label = f"{numbering} {item.number}"
    links = _image_links(item.files, f"{label}, output")
    local_inputs = [n for n in item.inputs if not n.startswith(("http://", "https://"))]
    if links and kind == "ok":
        shown = _image_links(local_inputs, f"{label}, input", "in") + links
        body = f'<div class="im">{"".join(shown)}</div>'
    else:
        body = f'<div class="e">{escape(without_credentials(item.error or item.status))}</div>'
    prompt = f'<p class="p">{escape(item.prompt)}</p>' if item.prompt else ""
    meta = [label]
    if item.model:
        meta.append(escape(item.model))
    for k, url in enumerate(item.inputs, 1):
        href = _remote(url)
        if href is not None:  # linked, never loaded: the page loads nothing remote
            meta.append(f'<a href="{href}" rel="noreferrer noopener">input {k}</a>')
    tid = f"<br><code>{escape(item.task_id)}</code>" if item.task_id else ""
    cost = f" · {escape(format_usd(item.cost_usd))}" if item.cost_usd is not None else ""
    return (
        f'<article class="c {kind}" id="j{item.number}">{body}{prompt}'
        f'<div class="m"><span class="s">{escape(item.status.replace("_", " "))}</span> '
        f"{' · '.join(meta)}{_duration(item.inference_ms)}{cost}{tid}</div></article>\n"
    )


def render_gallery(
    items: Iterable[GalleryItem],
    *,
    title: str = "wavespeed-async batch",
    command: str | None = None,
    wall_s: float | None = None,
    numbering: str = "job",
    wall_label: str = "wall time",
) -> str:
    """The page's HTML for ``items`` (shown in ``number`` order).

    ``numbering``: the word before each item's number (``job 3``; ``line 3`` for a jobs
    file). ``wall_label``: what ``wall_s`` is called in the header.
    """
    ordered = sorted(items, key=lambda i: i.number)
    counts: dict[str, int] = {}
    kinds = {"ok": 0, "bad": 0, "open": 0}
    for item in ordered:
        counts[item.status] = counts.get(item.status, 0) + 1
        kinds[STATUS_CLASS.get(item.status, "open")] += 1
    order = [s for s in STATUS_CLASS if s in counts] + sorted(set(counts) - set(STATUS_CLASS))
    count_text = "".join(
        f"<span><b>{counts[s]}</b> {escape(s.replace('_', ' '))}</span>" for s in order
    )
    facts = [f"{len(ordered)} job(s)"]
    costs = [i.cost_usd for i in ordered if i.cost_usd is not None]
    if costs:
        facts.append(f"cost {escape(format_usd(sum(costs, Decimal(0))))}")
    if wall_s is not None:
        facts.append(f"{escape(wall_label)} {wall_s:.1f} s")
    facts.append("written " + time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    cmd = (
        f'<p class="cmd">command: <code>{escape(without_credentials(command))}</code></p>'
        if command
        else ""
    )
    filters = "".join(
        f'<label for="f-{k}">{label} ({n})</label>'
        for k, label, n in (
            ("all", "all", len(ordered)),
            ("ok", "completed", kinds["ok"]),
            ("bad", "failed", kinds["bad"]),
            ("open", "not finished", kinds["open"]),
        )
    )
    t = escape(title)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            '<meta name="viewport" content="width=device-width,initial-scale=1">\n'
            f"<title>{t}</title><style>{_CSS}</style></head><body>\n"
            # Visually hidden, still focusable: Tab reaches the filter and the arrow keys
            # change it, as with any group of radio buttons.
            '<input type="radio" name="f" id="f-all" class="vh" checked>'
            '<input type="radio" name="f" id="f-ok" class="vh">'
            '<input type="radio" name="f" id="f-bad" class="vh">'
            '<input type="radio" name="f" id="f-open" class="vh">\n'
            f"<header><h1>{t}</h1>"
            f'<div class="counts">{count_text}</div>'
            f'<div class="m">{" · ".join(facts)}</div>{cmd}</header>\n'
            f'<nav class="filters">{filters}</nav>\n<main>\n',
            *(_card(item, escape(numbering)) for item in ordered),
            "</main></body></html>\n",
        ]
    )


def write_page(directory: str | os.PathLike[str], html_text: str) -> Path:
    """Write ``html_text`` as ``directory/index.html``, atomically; return the path."""
    folder = Path(directory)
    path = folder / INDEX_NAME
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(html_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the page is meant to be opened
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_gallery(
    directory: str | os.PathLike[str],
    results: Iterable[BulkResult[Any] | GalleryItem],
    *,
    title: str = "wavespeed-async batch",
    command: str | None = None,
    wall_s: float | None = None,
    model: str | None = None,
) -> Path:
    """Write ``directory/index.html``: a page of every job of a batch; return its path.

    Args:
        directory: The folder of the images (created if missing); the page goes there.
        results: ``run_many``/``wait_many`` results (any order: shown by index), or
            :class:`GalleryItem` records. A completed result's images are the files in
            ``directory`` named as :meth:`Client.download` names them by default
            (``{task_id}_{n}`` and an extension, ``.png`` say): download them there first.
        title: The page's title.
        command: A command line to show in the header.
        wall_s: The batch's wall time in seconds, to show in the header.
        model: The model to show for results that do not name one (no task was created).

    This is blocking file I/O (one directory listing, one write): from async code with a
    big batch, call it through ``anyio.to_thread.run_sync``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    listed: dict[str, list[tuple[int, str]]] | None = None
    items: list[GalleryItem] = []
    for r in results:
        if isinstance(r, GalleryItem):
            items.append(r)
            continue
        if listed is None:
            listed = _downloaded_files(folder)
        items.append(item_from_result(r, listed, model))
    html_text = render_gallery(items, title=title, command=command, wall_s=wall_s)
    return write_page(folder, html_text)
