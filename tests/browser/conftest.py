"""Real pages in a real browser: headless Chromium from the system, driven by Playwright's Python
package through ``executable_path`` (Playwright downloads no browser here: never run
``playwright install``). One browser for the whole session.

Chromium is ``$CERTIBLOC_CHROMIUM``, else ``/usr/bin/chromium``, else ``chromium`` on PATH. Without
one, every test here is skipped, and the session ends by listing them with the command that
enables them, so that a green run without a browser does not pass for a checked one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Playwright, async_playwright

ENABLE = "apt-get install chromium"
HERE = Path(__file__).resolve().parent

# A closed network: without the background-networking flags Chromium keeps trying to reach
# Google's services and misbehaves; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    named = os.environ.get("CERTIBLOC_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = find_chromium()
_NOT_RUN: list[str] = []


def _why_not() -> str:
    named = os.environ.get("CERTIBLOC_CHROMIUM")
    if named:
        return f"CERTIBLOC_CHROMIUM={named} is not an executable"
    return "no Chromium (not /usr/bin/chromium, none on PATH)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM is not None:
        return
    skip = pytest.mark.skip(reason=f"{_why_not()}: {ENABLE}")
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
            _NOT_RUN.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _NOT_RUN:
        return
    write = terminalreporter.write_line
    terminalreporter.section("browser tests NOT RUN", sep="!", red=True, bold=True)
    write(f"{_why_not()}: these {len(_NOT_RUN)} tests did not run:", red=True, bold=True)
    for nodeid in _NOT_RUN:
        write(f"  {nodeid}", red=True)
    write(f"Enable them with:  {ENABLE}", red=True, bold=True)
    write("(or point CERTIBLOC_CHROMIUM at a Chromium binary)", red=True)


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    assert CHROMIUM is not None  # the tests are skipped otherwise
    launched = await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    await launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where full-page screenshots go: ``$CERTIBLOC_SCREENSHOTS``, else a pytest tmp dir."""
    named = os.environ.get("CERTIBLOC_SCREENSHOTS")
    where = Path(named) if named else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where
