"""Install hints that work before the package is on an index.

From the source this installation came from (a clone, a git URL), the index form only after
an index install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import wavespeed_async
from wavespeed_async._core.install import install_command


@pytest.mark.parametrize(
    ("source", "command"),
    [
        (
            {"url": "file:///home/me/src/wavespeed-async", "dir_info": {"editable": True}},
            "pip install -e '/home/me/src/wavespeed-async[ray]'",
        ),
        (
            {"url": "file:///home/me/my%20clone", "dir_info": {}},
            "pip install '/home/me/my clone[ray]'",
        ),
        (
            {
                "url": "https://git.example.com/team/wavespeed-async.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc", "requested_revision": "v0.1.0"},
            },
            "pip install 'wavespeed-async[ray] @ git+https://git.example.com/team/"
            "wavespeed-async.git@v0.1.0'",
        ),
        (
            {
                "url": "https://user:secret@git.example.com/t/w.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc"},
            },
            "pip install 'wavespeed-async[ray] @ git+https://git.example.com/t/w.git'",
        ),
        ({}, "pip install 'wavespeed-async[ray]'"),  # from an index: no direct_url.json
    ],
)
def test_the_hint_names_where_this_installation_came_from(
    source: dict[str, object], command: str
) -> None:
    assert install_command("ray", source=source) == command


def test_this_checkout_hints_at_itself() -> None:
    # The test environment is an editable install of this checkout.
    command = install_command("fastapi")
    assert command.startswith("pip install ") and "[fastapi]" in command


@pytest.mark.e2e
def test_the_readmes_clone_install_works_in_a_project_of_ones_own(tmp_path: Path) -> None:
    """``pip install '/path/to/wavespeed-async[cli]'`` into a new project's venv works.

    The package and its command work there, and an extra's hint names that clone.
    """
    root = Path(wavespeed_async.__file__).resolve().parent.parent
    project = tmp_path / "my-project"
    project.mkdir()
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=project, check=True, timeout=120)
    venv_python = project / ".venv" / "bin" / "python"
    # The dependencies come from this environment (no download in a test): only the package
    # itself is installed, from the clone, as the README says.
    site = subprocess.run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    here = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps-of-the-test-env.pth").write_text("\n".join(here) + "\n")
    install = [str(venv_python), "-m", "pip", "install", "-q", "--no-deps", f"{root}[cli]"]
    subprocess.run(install, cwd=project, check=True, timeout=300, capture_output=True)

    code = (
        "import wavespeed_async, sys\n"
        "from wavespeed_async._core.install import install_command\n"
        "print(wavespeed_async.__file__)\n"
        "print(install_command('redis'))\n"
    )
    out = subprocess.run(
        [str(venv_python), "-c", code], cwd=project, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert out[0].startswith(site)  # the installed copy, not the clone
    assert out[1] == f"pip install '{root}[redis]'"
    version = subprocess.run(
        [str(project / ".venv" / "bin" / "wavespeed-async"), "--version"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert version.stdout.startswith("wavespeed-async ")
