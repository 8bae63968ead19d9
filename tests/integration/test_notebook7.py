"""The extension in Notebook 7 (the same plugin system as JupyterLab, no status bar): a real
``jupyter notebook`` and a demo server on loopback, a notebook run in Debian's headless
Chromium; the budget is drawn by the extension (not the HTML fallback) and a %%lomas_sql cell
is highlighted as SQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from tests.browser import (
    OUTPUT,
    SCREENSHOTS,
    SECONDS,
    chromium_page,
    jupyter_on_demo,
    same_color,
)
from tests.servers import AnalystJupyter

pytestmark = pytest.mark.browser

SQL = "%%lomas_sql --epsilon 0.5\nSELECT species, COUNT(*) AS n FROM df GROUP BY species"


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory) -> Iterator[AnalystJupyter]:
    folder = tmp_path_factory.mktemp("notebook7")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext lomas_jupyter\n%lomas_connect --dataset PENGUIN"),
        nbformat.v4.new_code_cell(SQL),
    ]
    # With its kernel named, the notebook opens without asking for one.
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(notebook, folder / "first.ipynb")
    with jupyter_on_demo(folder, "notebook") as jupyter:
        yield jupyter


@pytest.fixture(scope="module")
def page(notebook7) -> Iterator[Any]:
    with chromium_page() as page:
        page.goto(f"{notebook7.url}/notebooks/first.ipynb?token={notebook7.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=120 * SECONDS)
        page.wait_for_selector(".jp-Spinner", state="detached", timeout=120 * SECONDS)
        # a cell run before the kernel is ready is not run at all
        page.wait_for_selector(
            '.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120 * SECONDS
        )
        yield page


def test_the_budget_is_drawn_by_the_extension(page):
    # Run both cells as an analyst would: Shift+Enter on each. Notebook 7 may report its kernel
    # idle before its connection takes requests, and then drops them (the prompts stay
    # "[ ]"): run them again while nothing ran.
    prompt = page.locator(".jp-Notebook .jp-Cell .jp-InputPrompt").first
    for _ in range(4):
        page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function(
                "e => !/\\[\\s*\\]/.test(e.textContent)",
                arg=prompt.element_handle(),
                timeout=15 * SECONDS,
            )
            break
        except Exception:
            continue
    try:
        page.wait_for_selector(OUTPUT, timeout=120 * SECONDS)
    except Exception:
        page.screenshot(path=str(SCREENSHOTS / "notebook7-failed.png"))
        raise
    drawn = page.locator(OUTPUT).first.inner_text()
    assert drawn.startswith("PENGUIN") and "epsilon" in drawn and "left" in drawn
    # the extension's rendering, not the kernel's HTML fallback
    assert page.locator(".lomas-budget").count() == 0


def test_a_lomas_sql_cell_is_highlighted_as_sql(page):
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content", has_text="GROUP BY").first
    keyword = page.evaluate(
        "() => getComputedStyle(document.body).getPropertyValue("
        "'--jp-mirror-editor-keyword-color').trim()"
    )
    color = editor.locator("span", has_text="SELECT").first.evaluate(
        "e => getComputedStyle(e).color"
    )
    assert same_color(page, color, keyword), (color, keyword)
