"""What browser tests do on a page: run axe-core (from tests/js, the npm lock) and read its
violations, submit a form by clicking its button."""

from __future__ import annotations

import functools
from typing import Any

from playwright.async_api import Page, Response

from tests.support import node

BLOCKING = ("serious", "critical")


@functools.cache
def axe_source() -> str:
    return node.package_file("axe-core", "axe.min.js").read_text(encoding="utf-8")


async def axe_violations(page: Page, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is (every WCAG A/AA rule and best practice axe
    runs by default) whose impact is one of ``impacts``.

    axe is injected with ``page.evaluate``: Playwright evaluates through the DevTools protocol,
    which the pages' Content-Security-Policy (no script-src) does not govern, so the pages are
    checked with the very headers they are served with."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    results: dict[str, Any] = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    return [v for v in results["violations"] if v.get("impact") in impacts]


def describe(violations: list[dict[str, Any]]) -> str:
    """A readable list: rule id, impact, what it asks, and each node's target."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for n in v["nodes"]:
            target = " ".join(str(t) for t in n["target"])
            summary = " ".join(str(n.get("failureSummary", "")).split())
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


async def submit_form(
    page: Page,
    button: str,
    *,
    within: str | None = None,
    exact: bool = True,
    timeout: float = 15_000,
) -> Response | None:
    """Submit a form the way a person does: click the button whose accessible name is
    ``button`` (or starts with it, ``exact=False``; in the element ``within`` selects, when
    given), and wait for the page it leads
    to; that page's response (None for a same-document navigation). Works with JavaScript off:
    a plain HTML form submission."""
    scope = page.locator(within) if within else page
    target = scope.get_by_role("button", name=button, exact=exact)
    async with page.expect_navigation(timeout=timeout) as navigation:
        await target.click()
    return await navigation.value
