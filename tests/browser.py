"""What the browser tests share: Debian's Chromium (never a downloaded browser), headless,
driven by Playwright; where screenshots go; how a colour is compared with a theme variable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers import AnalystJupyter, DemoProcess

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECONDS = 1000  # Playwright counts milliseconds
OUTPUT = ".lomas-BudgetOutput"  # the extension's rendering of application/vnd.lomas.budget+json


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of a fresh headless Chromium, 1400 x 900."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.set_default_timeout(60 * SECONDS)
            yield page
        finally:
            browser.close()


def same_color(page: Any, computed: str, variable: str) -> bool:
    """Whether a computed colour is the one a CSS value (e.g. a theme variable's) gives."""
    probe = page.evaluate(
        "(c) => { const d = document.createElement('div'); d.style.color = c;"
        " document.body.appendChild(d); const v = getComputedStyle(d).color; d.remove();"
        " return v; }",
        variable,
    )
    return computed == probe


@contextmanager
def jupyter_on_demo(
    folder: Path, app: str, extra_args: tuple[str, ...] = ()
) -> Iterator[AnalystJupyter]:
    """A demo DP server with sample data in ``folder``/lomas-demo, and the analyst's Jupyter
    (``app``) in ``folder`` connected to it through the demo's connection file."""
    demo = DemoProcess(folder / "lomas-demo").start()
    try:
        jupyter = AnalystJupyter(
            folder,
            {"LOMAS_CONNECTION_FILE": str(demo.folder / "connection.json")},
            app=app,
            extra_args=extra_args,
        ).start()
        try:
            yield jupyter
        finally:
            jupyter.stop()
    finally:
        demo.stop()
