"""The pip command that adds an extra to this installation, from wherever it came.

The package is installed from a clone or a git URL until it is published on an index, so
``pip install 'wavespeed-async[redis]'`` would not resolve for most users. The command
names the source this installation was made from (its ``direct_url.json``, PEP 610): the
clone's path (``-e`` for an editable one), or the git URL and revision; the index form
only when it came from an index.
"""

from __future__ import annotations

import json
import shlex
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any, Final
from urllib.parse import unquote, urlsplit

__all__ = ["DIST_NAME", "install_command"]

#: The distribution's name on an index.
DIST_NAME: Final = "wavespeed-async"


def _direct_url() -> dict[str, Any] | None:
    try:
        text = distribution(DIST_NAME).read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def install_command(extra: str, *, source: dict[str, Any] | None = None) -> str:
    """``pip install ...`` adding ``extra`` to this installation.

    ``source``: a ``direct_url.json`` document (default: this installation's own).
    """
    data = _direct_url() if source is None else source
    url = data.get("url") if isinstance(data, dict) else None
    if isinstance(url, str) and data is not None:
        parts = urlsplit(url)
        vcs = data.get("vcs_info")
        if parts.scheme == "file" and not isinstance(vcs, dict):
            path = unquote(parts.path)
            editable = (data.get("dir_info") or {}).get("editable") is True
            target = shlex.quote(f"{path}[{extra}]")
            return f"pip install -e {target}" if editable else f"pip install {target}"
        if isinstance(vcs, dict) and parts.scheme in ("http", "https", "ssh", "file"):
            # Never a password of the URL (PEP 610 keeps only ${ENV} placeholders anyway).
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            clean = f"{parts.scheme}://{host}{parts.path}"
            revision = vcs.get("requested_revision")
            at = f"@{revision}" if isinstance(revision, str) and revision else ""
            tool = str(vcs.get("vcs", "git"))
            return "pip install " + shlex.quote(f"{DIST_NAME}[{extra}] @ {tool}+{clean}{at}")
    return f"pip install '{DIST_NAME}[{extra}]'"
