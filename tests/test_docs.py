"""Every ```python and ```bash block in README.md and docs/*.md runs, against the emulator.

Each block runs in a fresh interpreter, in an empty temporary folder, with
``WAVESPEED_API_KEY`` set and ``WAVESPEED_BASE_URL`` pointing at an emulator (a subprocess
with fast latency, shared by the blocks of this module). A block passes when it exits 0
within the time limit and leaves no unclosed session or other resource warning behind.

A block that names the Redis URL ``redis://redis:6379/0`` runs against a real redis-server
(started for this module on a random loopback port): the URL is rewritten to that server's.

A shell block runs under ``bash -e`` in a folder holding a copy of ``examples/`` (a jobs file
it names that is not there is a copy of the example jobs file), in the environment the tests
run in: an install step (``python3 -m venv .venv && .venv/bin/pip install -q -e '.[cli]'``,
``pip install '/path/to/wavespeed-async[redis]'``) is checked, not run: every requirement of
the extras it names must be installed here. ``.venv/bin/`` is this environment's. A line
that runs the test suite must be the very command ``.ci/run`` runs. Each ``-o FOLDER`` of a
batch must hold a manifest afterwards.

A block that cannot run there is marked on the line directly before its opening fence::

    <!-- docs-test: skip (needs a Redis cluster) -->

The reason is required.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import wavespeed_async
from tests.services import RedisServer, redis_server

pytestmark = pytest.mark.e2e

ROOT: Final = Path(wavespeed_async.__file__).resolve().parent.parent
DOCS: Final = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Seconds one block may take; the blocks run against millisecond latencies.
BLOCK_TIMEOUT_S: Final = 60.0
KEY: Final = "docs-test-key"
#: The Redis URL the docs show; a block that names it runs against a real server.
DOCS_REDIS_URL: Final = "redis://redis:6379/0"

_FENCE: Final = re.compile(r"^(\s*)```python\s*$")
_SHELL_FENCE: Final = re.compile(r"^(\s*)```(?:bash|sh|shell)\s*$")
_DIRECTIVE: Final = re.compile(r"^\s*<!--\s*docs-test:")
_SKIP: Final = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((?P<reason>.*)\)\s*-->\s*$")
#: What a block must not leave on stderr: an unclosed aiohttp session or connector, a
#: coroutine never awaited, or any other resource warning.
_LEAKS: Final = re.compile(r"Unclosed|ResourceWarning|was never awaited|Exception ignored")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  #: 1-based line of the opening fence
    code: str
    directive: str | None  #: the docs-test comment on the line before, if any

    @property
    def id(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, with the docs-test comment before each."""
    return fenced_blocks(path, _FENCE)


def shell_blocks(path: Path) -> list[Block]:
    """The ```bash (or sh, shell) blocks of a Markdown file."""
    return fenced_blocks(path, _SHELL_FENCE)


def fenced_blocks(path: Path, fence: re.Pattern[str]) -> list[Block]:
    """The blocks of a Markdown file whose opening line matches ``fence``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if m is None:
            i += 1
            continue
        indent = len(m.group(1))
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        before = lines[start - 1] if start > 0 else ""
        directive = before if _DIRECTIVE.match(before) else None
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", directive))
        i += 1
    return blocks


ALL_BLOCKS: Final = [b for path in DOCS for b in python_blocks(path)]
SHELL_BLOCKS: Final = [b for path in DOCS for b in shell_blocks(path)]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    """A ``python -m wavespeed_async.emulator`` subprocess on a free port, stopped by pid."""
    cmd = [sys.executable, "-m", "wavespeed_async.emulator", "--port", "0", "--latency", "fast"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "WaveSpeed emulator listening on "
        assert line.startswith(prefix), line
        yield line[len(prefix) :]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def docs_redis() -> Iterator[RedisServer]:
    """A real redis-server for the blocks that name :data:`DOCS_REDIS_URL`."""
    with redis_server() as server:
        yield server


def test_blocks_are_found() -> None:
    # README's quick look at the client is a Python block: an empty list means a broken parser.
    assert any(b.path.name == "README.md" for b in ALL_BLOCKS)
    assert any(b.path.parent.name == "docs" for b in ALL_BLOCKS)
    assert any(b.path.name == "README.md" for b in SHELL_BLOCKS)  # the quick start


def test_skip_comment_needs_a_reason(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text(
        "<!-- docs-test: skip (needs a cluster) -->\n```python\nprint(1)\n```\n\n"
        "<!-- docs-test: skip () -->\n```python\nprint(2)\n```\n"
    )
    first, second = python_blocks(md)
    assert _skip_reason(first) == "needs a cluster"
    with pytest.raises(ValueError, match="reason"):
        _skip_reason(second)


def _skip_reason(block: Block) -> str | None:
    """The skip reason, ``None`` to run; a malformed or reason-less comment is an error."""
    if block.directive is None:
        return None
    m = _SKIP.match(block.directive)
    if m is None:
        raise ValueError(
            f"{block.id}: unknown docs-test comment {block.directive.strip()!r}; "
            "allowed: <!-- docs-test: skip (reason) -->"
        )
    reason = m.group("reason").strip()
    if not reason:
        raise ValueError(f"{block.id}: a docs-test skip needs a reason inside the parentheses")
    return reason


def run_block(
    block: Block, argv: list[str], *, cwd: Path, emulator_url: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run a block's process against the emulator, in a session of its own.

    It runs with the test key and resource warnings shown (no other ``WAVESPEED_*``
    variable of this environment). Whatever it started is stopped with it, by its process
    group: once it ends (a server it left behind), or when it is still running after
    :data:`BLOCK_TIMEOUT_S` (the test fails).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    env.update(
        WAVESPEED_API_KEY=KEY,
        WAVESPEED_BASE_URL=emulator_url,
        PYTHONWARNINGS="always::ResourceWarning",
        **extra_env,
    )
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_group(proc.pid)
        proc.communicate()
        pytest.fail(f"{block.id}: still running after {BLOCK_TIMEOUT_S:g} s")
    finally:
        _stop_group(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _stop_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_doc_block_runs(
    block: Block, emulator_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(reason)
    code = block.code
    if DOCS_REDIS_URL in code:
        server: RedisServer = request.getfixturevalue("docs_redis")
        code = code.replace(DOCS_REDIS_URL, server.url)
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    done = run_block(block, [sys.executable, str(script)], cwd=tmp_path, emulator_url=emulator_url)
    assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{done.stderr}"
    leak = _LEAKS.search(done.stderr)
    assert leak is None, f"{block.id} left a resource behind:\n{done.stderr}"
    assert KEY not in done.stdout + done.stderr


BASH: Final = shutil.which("bash") or "/bin/bash"
#: How the docs install the package; the extras named are checked against this environment.
_INSTALL: Final = re.compile(
    r"python3 -m venv \.venv && \.venv/bin/pip install -q -e '\.\[(?P<local>[\w,-]+)\]'"
    r"|pip install 'wavespeed-async\[(?P<named>[\w,-]+)\]'"
    r"|pip install '/path/to/wavespeed-async\[(?P<clone>[\w,-]+)\]'"
)
#: The Redis URLs the shell blocks show; a block that names one runs against a real server.
_SHELL_REDIS: Final = re.compile(r"redis://redis(?:\.internal)?:6379/0")
_JOBS_FILE: Final = re.compile(r"(?<![\w./-])([\w./-]+\.jsonl)(?![\w.])")
_OUT_FOLDER: Final = re.compile(r"\s-o\s+(\S+)")


def missing_for_extras(extras: list[str]) -> list[str]:
    """The requirements of the package's ``extras`` that this environment does not satisfy.

    An extra that does not exist is reported as such.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    requires = [Requirement(r) for r in metadata.requires("wavespeed-async") or []]
    declared = set(metadata.metadata("wavespeed-async").get_all("Provides-Extra") or [])
    missing: list[str] = []
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in declared:
            missing.append(f"no extra named {extra!r}")
            continue
        for req in requires:
            if req.marker is None or not req.marker.evaluate({"extra": extra}):
                continue
            if req.name == "wavespeed-async":
                todo.extend(req.extras)
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                missing.append(str(req))
                continue
            if not req.specifier.contains(version, prereleases=True):
                missing.append(f"{req} ({version} installed)")
    return missing


def test_an_extra_that_does_not_exist_is_missing() -> None:
    assert missing_for_extras(["cli", "test"]) == []
    assert missing_for_extras(["no-such-extra"]) == ["no extra named 'no-such-extra'"]


def shell_script(block: Block, redis_url: str | None) -> str:
    """What runs for ``block``: its text, with a few steps checked and replaced.

    Install steps are checked and replaced by ``true``, ``.venv/bin/`` is dropped (this
    environment's tools come first on PATH), the test command is checked against ``.ci/run``
    (either lane), and the docs' Redis URL is replaced by ``redis_url``.
    """
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines: list[str] = []
    for line in block.code.splitlines():
        if "-m pytest" in line:
            assert any(f'{lane}="{line.strip()}"' in ci_run for lane in ("TEST_CMD", "E2E_CMD")), (
                f"{block.id}: runs the tests as {line.strip()!r}, not as .ci/run does"
            )
            lines.append("true  # the test command: .ci/run runs it")
            continue
        for m in _INSTALL.finditer(line):
            extras = (m.group("local") or m.group("named") or m.group("clone")).split(",")
            missing = missing_for_extras(extras)
            assert not missing, f"{block.id}: {m.group(0)!r} needs {missing}"
        lines.append(_INSTALL.sub("true", line).replace(".venv/bin/", ""))
    script = "\n".join(lines) + "\n"
    if redis_url is not None:
        script = _SHELL_REDIS.sub(redis_url, script)
    return script


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_doc_shell_block_runs(
    block: Block, emulator_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(reason)
    redis_url = None
    if _SHELL_REDIS.search(block.code):
        redis_url = request.getfixturevalue("docs_redis").url
    script = shell_script(block, redis_url)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for name in _JOBS_FILE.findall(script):
        jobs = tmp_path / name
        if not jobs.exists():  # a jobs file of the reader's own: the example one
            jobs.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "examples" / "jobs.jsonl", jobs)
            if not (jobs.parent / "images").exists():
                shutil.copytree(ROOT / "examples" / "images", jobs.parent / "images")
    done = run_block(
        block,
        [BASH, "-e", "-o", "pipefail", "-c", script],
        cwd=tmp_path,
        emulator_url=emulator_url,
        # This environment's tools first: the block's ``.venv/bin/`` was dropped.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{output}"
    assert _LEAKS.search(done.stderr) is None, f"{block.id} left a resource behind:\n{output}"
    assert KEY not in output
    for folder in _OUT_FOLDER.findall(script):
        assert (tmp_path / folder / "results.jsonl").is_file(), f"{block.id}: no manifest"
