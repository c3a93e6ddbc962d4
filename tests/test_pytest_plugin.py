"""The pytest plugin, used as a user would: a small test file run by pytest (pytester)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import wavespeed_async

pytestmark = pytest.mark.e2e

ROOT = Path(wavespeed_async.__file__).resolve().parent.parent
pytest_plugins = ("pytester",)


def _run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(source))
    # Installed plugins (ours, anyio's) load through their entry points, as for a user.
    return pytester.runpytest_inprocess("-p", "no:randomly", "-W", "error", "-v")


def test_fixtures_give_a_running_emulator_and_a_bound_client(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import os
        import pytest
        from wavespeed_async import Client

        @pytest.mark.anyio
        async def test_app(wavespeed_client, wavespeed_emulator):
            pred = await wavespeed_client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a fox"})
            assert pred.ok
            assert pred.outputs[0].startswith(wavespeed_emulator.base_url)
            assert wavespeed_emulator.stats().tasks_created == 1

        @pytest.mark.anyio
        async def test_code_that_builds_its_own_client(wavespeed_emulator):
            assert os.environ["WAVESPEED_BASE_URL"] == wavespeed_emulator.base_url
            async with Client() as client:
                assert await client.balance() == wavespeed_emulator.balance
        """,
    )
    result.assert_outcomes(passed=2)


def test_marker_sets_tier_faults_latency_and_forced_failures(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import pytest
        from wavespeed_async import TaskFailedError
        from wavespeed_async.emulator import Limits, ManualClock

        pytestmark = [pytest.mark.anyio, pytest.mark.wavespeed(tier="gold", seed=3)]

        @pytest.mark.wavespeed(tier="bronze", faults={"poll.server_error_before": 0.5})
        async def test_config(wavespeed_emulator):
            config = wavespeed_emulator.config
            assert config.limits == Limits.tier("bronze")   # the nearest marker wins
            assert config.seed == 3                          # the module's marker still applies
            assert config.poll_faults.server_error_before == 0.5
            assert config.latency.default.inference_ms[2] < 100   # fast by default

        @pytest.mark.wavespeed(failure_rate=1.0)
        async def test_every_task_fails(wavespeed_client):
            with pytest.raises(TaskFailedError):
                await wavespeed_client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "x"})

        async def test_prompt_directive_forces_one_outcome(wavespeed_client):
            with pytest.raises(TaskFailedError) as info:
                model = "wavespeed-ai/flux-kontext-dev"
                await wavespeed_client.run(model, {"prompt": "[fail:1200]"})
            assert info.value.code == 1200

        @pytest.mark.wavespeed(manual_clock=True, latency="realistic")
        async def test_manual_clock(wavespeed_client, wavespeed_emulator):
            assert isinstance(wavespeed_emulator.config.clock, ManualClock)
            pred = await wavespeed_client.submit("wavespeed-ai/flux-kontext-dev", {"prompt": "y"})
            await wavespeed_emulator.advance(60)
            assert wavespeed_emulator.task(pred.id).status == "completed"
        """,
    )
    result.assert_outcomes(passed=4)


def test_marker_mistakes_are_reported(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.wavespeed(tier="platinum")
        async def test_bad_tier(wavespeed_emulator):
            pass

        @pytest.mark.anyio
        @pytest.mark.wavespeed(latncy="fast")
        async def test_misspelled(wavespeed_emulator):
            pass
        """,
    )
    result.stdout.fnmatch_lines(
        [
            "*tier='platinum'; allowed: one of bronze, silver, gold, ultra*",
            "*unknown keyword(s) latncy*",
        ]
    )
    assert result.ret != 0


def test_importing_the_package_does_not_import_pytest() -> None:
    code = "import sys, wavespeed_async, wavespeed_async.emulator; print('pytest' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your app", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = _run(pytester, code)
    result.assert_outcomes(passed=1)


def test_with_trio_installed_tests_using_the_fixtures_run_on_asyncio_only(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("trio")
    result = _run(
        pytester,
        """
        import anyio
        import pytest

        @pytest.mark.anyio
        async def test_uses_the_client(wavespeed_client):
            assert (await wavespeed_client.run("wavespeed-ai/flux-kontext-dev", {"prompt": "a"})).ok

        @pytest.mark.anyio
        async def test_without_the_fixtures(anyio_backend_name):
            await anyio.sleep(0)   # the user's own code still runs on every backend
        """,
    )
    result.assert_outcomes(passed=3, deselected=1)
    result.stdout.fnmatch_lines(["*test_uses_the_client[[]asyncio[]] PASSED*"], consecutive=False)
    result.stdout.fnmatch_lines(["*1 non-asyncio run(s) of tests using its fixtures deselected*"])


def test_a_fixture_under_trio_fails_with_a_one_line_reason(pytester: pytest.Pytester) -> None:
    pytest.importorskip("trio")
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "trio"
        """
    )
    result = _run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        async def test_app(wavespeed_client):
            pass
        """,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*wavespeed-async runs on asyncio only*anyio_backend*"])
    assert "Traceback" not in result.stdout.str()


def test_the_readme_conftest_pins_tests_that_build_their_own_client(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("trio")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your app", 1)[1].split("\n## ", 1)[0]
    conftest = section.split("```python\n")[2].split("```", 1)[0]
    assert "anyio_backend" in conftest
    pytester.makeconftest(conftest)
    result = _run(
        pytester,
        """
        import pytest
        from wavespeed_async import Client
        from wavespeed_async.emulator import Emulator

        @pytest.mark.anyio
        async def test_own_client():
            async with Emulator() as emu, Client("k", base_url=emu.base_url) as client:
                assert await client.balance() > 0
        """,
    )
    result.assert_outcomes(passed=1)
