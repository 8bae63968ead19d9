"""The JupyterLab extension in a real browser: Debian's Chromium, headless, driven by
Playwright, on JupyterLab and a demo server started on loopback. The quickstart notebook is
opened and run as an analyst would; screenshots go to build/screenshots/.

Never a browser download: the browser is /usr/bin/chromium (scripts/setup installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[AnalystJupyter]:
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", folder / "quickstart.ipynb")
    # No "get notified about Jupyter news?" prompt over the screenshots (and no fetch).
    settings = folder / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    extra_args = (
        # window.jupyterapp: the tests run JupyterLab's own commands (run all, new cell).
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={folder / 'settings'}",
    )
    with jupyter_on_demo(folder, "jupyterlab", extra_args) as jupyter:
        yield jupyter


@pytest.fixture(scope="module")
def page(lab) -> Iterator[Any]:
    with chromium_page() as page:
        page.goto(f"{lab.url}/lab/tree/quickstart.ipynb?token={lab.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120 * SECONDS)
        page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.sessionContext"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
            " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
            " === 'idle'",
            timeout=120 * SECONDS,
        )
        yield page


def _command(page: Any, command: str, args: dict[str, Any] | None = None) -> None:
    page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}])


def _kernel_idle(page: Any) -> None:
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'idle'"
    )


def _shot(page: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _status_text(page: Any) -> str:
    item = page.locator(".lomas-Status")
    return item.inner_text() if item.count() and item.first.is_visible() else ""


def test_running_the_quickstart_shows_budgets_in_outputs_and_status_bar(page):
    assert _status_text(page) == ""  # no lomas output in this notebook yet
    _command(page, "notebook:run-all-cells")
    # the first query's display, then the whole notebook
    try:
        page.wait_for_selector(OUTPUT, timeout=180 * SECONDS)
    except Exception:
        _shot(page, "quickstart-failed")
        raise
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Cell .jp-InputArea-prompt').length > 0"
        " && [...document.querySelectorAll('.jp-Cell .jp-InputArea-prompt')]"
        ".every(p => !p.textContent.includes('*'))",
        timeout=300 * SECONDS,
    )
    outputs = page.locator(OUTPUT)
    assert outputs.count() >= 5
    text = outputs.last.inner_text()
    assert "epsilon" in text
    # the remaining budget of the dataset the notebook's last lomas output was about
    last = outputs.last.inner_text().split(":")[0].strip()
    # the status bar reads the notebook once its outputs have settled
    try:
        page.wait_for_function(
            "([prefix]) => { const s = document.querySelector('.lomas-Status');"
            " return s && s.textContent.startsWith(prefix); }",
            arg=[f"{last}: ε "],
            timeout=10 * SECONDS,
        )
    except Exception:
        pass
    status = _status_text(page)
    assert status.startswith(f"{last}: ε ") and "left" in status, (status, last)
    _shot(page, "quickstart-run")
    # a result with its ± columns, its notes and its budget display (the README shows it)
    cell = page.locator(".jp-Notebook .jp-Cell", has_text="survival_rate").last
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=str(SCREENSHOTS / "result.png"))


def test_older_budget_displays_say_as_of(page):
    texts = page.locator(OUTPUT).all_inner_texts()
    assert any("as of" in t for t in texts[:-1])
    # a current output shows no badge at all, not even an empty one
    # (outputs scrolled out of view have no inner text: their text content is read)
    badges = page.locator(f"{OUTPUT} .lomas-BudgetDisplay-asOf").evaluate_all(
        "bs => bs.map(b => b.hidden ? getComputedStyle(b).display === 'none'"
        " : b.textContent.trim() !== '')"
    )
    assert badges and all(badges), badges


def test_the_status_bar_changes_after_a_query(page):
    before = _status_text(page)
    _command(page, "notebook:insert-cell-below")
    _type_cell(
        page,
        "%%lomas_sql --dataset PENGUIN --epsilon 0.2 --fresh --yes\nSELECT COUNT(*) AS n FROM df",
    )
    _command(page, "notebook:run-cell")
    page.wait_for_function(
        "([before]) => { const s = document.querySelector('.lomas-Status');"
        " return s && s.textContent && s.textContent !== before; }",
        arg=[before],
        timeout=120 * SECONDS,
    )
    assert _status_text(page) != before


def test_the_panel_lists_datasets_and_columns(page):
    _command(page, "lomas-jupyter:open-budget-panel")
    panel = page.locator("#lomas-jupyter-budget")
    panel.get_by_text("PENGUIN", exact=True).first.wait_for()
    assert "TITANIC" in panel.inner_text()
    # The dataset of the newest output opens by itself; a click would close it again.
    penguin = panel.locator(".lomas-Panel-datasetName", has_text="PENGUIN").first
    if penguin.get_attribute("aria-expanded") != "true":
        penguin.click()
    panel.get_by_text("species", exact=True).first.wait_for()
    assert "body_mass_g" in panel.inner_text()
    _shot(page, "panel")


def test_a_lomas_sql_cell_is_highlighted_as_sql(page):
    _command(page, "notebook:insert-cell-below")
    _type_cell(page, "%%lomas_sql\nSELECT species, COUNT(*) AS n FROM df GROUP BY species")
    cell = page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content")
    keyword = page.evaluate(
        "() => getComputedStyle(document.body).getPropertyValue("
        "'--jp-mirror-editor-keyword-color').trim()"
    )
    color = cell.locator("span", has_text="SELECT").first.evaluate("e => getComputedStyle(e).color")
    assert same_color(page, color, keyword), (color, keyword)


def test_the_magic_line_is_not_highlighted_as_sql(page):
    _command(page, "notebook:insert-cell-below")
    _type_cell(page, "%%lomas_sql --epsilon 0.5 --fresh\nSELECT COUNT(*) AS n FROM df -- counted")
    lines = page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-line")
    styles = "e => [...e.querySelectorAll('span')].map(s => getComputedStyle(s).fontStyle)"
    # SQL comments are italic: the magic line's "--epsilon" must not be one, the body's is.
    assert "italic" not in lines.nth(0).evaluate(styles)
    assert "italic" in lines.nth(1).evaluate(styles)


def test_completion_offers_a_column_of_the_dataset(page):
    _command(page, "notebook:insert-cell-below")
    _type_cell(page, "%%lomas_sql\nSELECT spe")
    page.keyboard.press("Tab")
    completer = page.locator(".jp-Completer")
    completer.get_by_text("species").first.wait_for(timeout=60 * SECONDS)
    _shot(page, "completion")


def test_the_status_bar_follows_a_spend_that_made_no_output(page, lab):
    page.keyboard.press("Escape")  # the completer of the test above
    _kernel_idle(page)
    _command(page, "notebook:insert-cell-below")
    # Spent from Python, its result not shown: no budget display says so.
    _type_cell(
        page,
        "from lomas_jupyter import Client\n"
        'Client.discover().smartnoise_sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", epsilon=0.3);',
    )
    _command(page, "notebook:run-cell")
    page.wait_for_timeout(500)
    _kernel_idle(page)
    left = page.evaluate(
        "async ([token]) => { const r = await fetch('/lomas-jupyter/api/datasets',"
        " {headers: {Authorization: 'token ' + token}}); const body = await r.json();"
        " return body.datasets.find(d => d.name === 'PENGUIN').remaining.epsilon; }",
        [lab.token],
    )
    expected = f"PENGUIN: ε {left:.6g}"
    before = _status_text(page)
    assert before.startswith("PENGUIN: ε "), before
    assert before.split(",")[0].split(" left")[0] != expected, "the spend is already shown"
    # The panel's refresh reads the route: its numbers are newer than every output's.
    page.locator("#lomas-jupyter-budget .lomas-Panel-refresh").click()
    page.wait_for_function(
        "([expected]) => { const s = document.querySelector('.lomas-Status');"
        " return s && s.textContent.startsWith(expected); }",
        arg=[expected],
        timeout=30 * SECONDS,
    )
    assert "as of" not in _status_text(page)
    # ...and the output that said what was left says it no more.
    last = page.locator(OUTPUT, has_text="PENGUIN").last
    assert "as of" in last.inner_text()


def _type_cell(page: Any, text: str) -> None:
    """Type into the active cell as an analyst would (Enter for new lines)."""
    page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").click()
    for number, line in enumerate(text.split("\n")):
        if number:
            page.keyboard.press("Enter")
        page.keyboard.type(line)
