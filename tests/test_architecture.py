"""The house: floors that only reach down, integrations the client never loads, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

import wavespeed_async

PACKAGE: Final = Path(wavespeed_async.__file__).parent
#: Every public name of the release before the package was split into floors.
EARLIER_PUBLIC_NAMES: Final = (
    "DEFAULT_BASE_URL", "TIERS", "APIStatusError", "AuthenticationError", "BadRequestError",
    "BulkResult", "BulkRun", "Client", "ClientClosedError", "ConnectError", "DecodeError",
    "FlowLimits", "FluxKontextDev", "FluxKontextProTextToImage", "LedgerError",
    "NotFoundError", "OutputRefusedError", "PermissionDeniedError", "PollConfig",
    "Prediction", "Progress", "RateLimitError", "RetryConfig", "ServerError", "SizeLimits",
    "SubmissionOutcomeUnknown", "SubmitSkipped", "TaskCreatedHook", "TaskFailedError",
    "TaskTimeoutError", "TierLimits", "Timeouts", "Timings", "TransportError", "TypedRequest",
    "UnknownFieldWarning", "Urls", "ValidationError", "WaveSpeedError",
    "WebhookVerificationError", "__version__", "sign_webhook", "validate_input",
    "verify_webhook",
)  # fmt: skip
#: What ``import wavespeed_async`` must not load: the integrations and their libraries.
NOT_LOADED: Final = (
    "redis",
    "ray",
    "fastapi",
    "starlette",
    "rich",
    "opentelemetry",
    "wavespeed_async.emulator",
    "wavespeed_async.cli",
    "wavespeed_async.redis",
    "wavespeed_async.ray",
    "wavespeed_async.fastapi",
    "wavespeed_async.jobs",
    "wavespeed_async.gallery",
    "wavespeed_async.otel",
    "wavespeed_async.pytest_plugin",
)
MAX_MODULE_LINES: Final = 600


@pytest.mark.parametrize("name", EARLIER_PUBLIC_NAMES)
def test_every_earlier_public_name_still_imports(name: str) -> None:
    assert name in wavespeed_async.__all__
    assert getattr(wavespeed_async, name) is not None


@pytest.mark.e2e
def test_importing_the_package_loads_no_integration() -> None:
    code = (
        "import sys, wavespeed_async\n"
        "from wavespeed_async import Client\n"
        f"print(','.join(m for m in {NOT_LOADED!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def _imports(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (its relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("floor", ["_core", "_http", "_runtime", "_facade"])
def test_no_floor_of_the_client_names_an_integration(floor: str) -> None:
    """What lint-imports checks in CI, also in the test lane a newcomer runs."""
    integrations = ("redis", "ray", "fastapi", "rich", "opentelemetry")
    for path in (PACKAGE / floor).rglob("*.py"):
        for name in _imports(path):
            top, _, rest = name.partition(".")
            assert top not in integrations, (path, name)
            if top == "wavespeed_async":
                leaves = ("cli", "emulator", "redis", "ray", "fastapi", "jobs", "gallery")
                assert not rest.startswith((*leaves, "otel", "pytest_")), (path, name)


def test_the_core_imports_no_event_loop_and_no_http() -> None:
    for path in (PACKAGE / "_core").rglob("*.py"):
        tops = {name.partition(".")[0] for name in _imports(path)}
        assert not tops & {"asyncio", "anyio", "aiohttp", "yarl", "multidict"}, path
