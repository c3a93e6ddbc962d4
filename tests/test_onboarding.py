"""What a new user reads first: progress text, exports, import errors, docstrings."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import wavespeed_async
import wavespeed_async.emulator as emulator_pkg
from wavespeed_async import BulkRun, Progress
from wavespeed_async._core.install import install_command

ROOT = Path(wavespeed_async.__file__).resolve().parent.parent


@pytest.mark.anyio
async def test_progress_text_shows_queued_rate_and_eta_as_the_readme_says() -> None:
    progress = Progress(total=40, queued=18, submitting=2, running=8, completed=11, failed=1)
    progress.started_at = anyio.current_time() - 4.0  # 12 done in 4 s: 3/s, 28 left: ~9 s
    text = str(progress)
    assert text.startswith("12/40 done (11 ok, 1 failed); 8 running, 20 queued; 3.0/s, ETA ")
    assert text.endswith(" s")
    assert 9 <= float(text.rsplit("ETA ", 1)[1].split()[0]) <= 10
    # The README's bulk example names what the text shows: "live counters: queued, ..."
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    comment = readme.split("print(results.progress)", 1)[1].split("live counters:", 1)[1]
    named = [w.strip() for w in comment.split("\n", 1)[0].split(",")]
    assert named == ["queued", "running", "done", "rate"]
    for word in named:
        assert ("/s" if word == "rate" else word) in text
    done = Progress(total=2, completed=2)
    done.started_at = anyio.current_time() - 1.0
    assert "ETA" not in str(done)  # nothing left to estimate
    # The example's inputs are a generator: no length, so no ETA, as the README says.
    unsized = Progress(total=None, running=3, completed=5)
    unsized.started_at = anyio.current_time() - 1.0
    assert "ETA" not in str(unsized) and unsized.eta_s is None
    assert "has no known length, so it shows none" in readme


def test_public_names_a_user_needs_are_exported() -> None:
    for name in ("TaskCreatedHook", "UnknownFieldWarning"):
        assert name in wavespeed_async.__all__
        assert hasattr(wavespeed_async, name)
    assert issubclass(wavespeed_async.UnknownFieldWarning, UserWarning)


@pytest.mark.e2e
def test_fastapi_module_without_fastapi_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import wavespeed_async.fastapi\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert install_command("fastapi") in out


@pytest.mark.e2e
def test_a_redis_share_without_redis_py_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from wavespeed_async import Client\n"
        "try:\n"
        "    Client('k', base_url='http://127.0.0.1:9', share='redis://127.0.0.1:9/0')\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert install_command("redis") in out


@pytest.mark.e2e
def test_ray_module_without_ray_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "try:\n"
        "    import wavespeed_async.ray\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "wavespeed_async.ray needs Ray Data" in out
    assert install_command("ray") in out


def _public_callables(cls: type) -> list[str]:
    names = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (property, classmethod, staticmethod)) or inspect.isfunction(value):
            names.append(name)
    return names


def test_bulk_run_and_the_emulator_helpers_have_real_docstrings() -> None:
    doc = inspect.getdoc(BulkRun) or ""
    assert "async with" in doc and "Raises" in doc and "abandoned" in doc
    missing = []
    for name in emulator_pkg.__all__:
        obj = getattr(emulator_pkg, name)
        if not inspect.isclass(obj):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        for member in _public_callables(obj):
            value = inspect.getattr_static(obj, member)
            target = value.fget if isinstance(value, property) else value
            target = getattr(target, "__func__", target)
            if not (getattr(target, "__doc__", None) or "").strip():
                missing.append(f"{name}.{member}")
    assert missing == []
    emulator_doc = inspect.getdoc(emulator_pkg.Emulator) or ""
    assert "Args:" in emulator_doc and "force_fault" in emulator_doc
