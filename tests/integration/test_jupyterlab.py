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

from tests.servers import AnalystJupyter, DemoProcess

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
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
OUTPUT = ".lomas-BudgetOutput"  # the extension's rendering of application/vnd.lomas.budget+json
SECONDS = 1000  # Playwright counts milliseconds


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[AnalystJupyter]:
    folder = tmp_path_factory.mktemp("lab")
    demo = DemoProcess(folder / "lomas-demo").start()
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", folder / "quickstart.ipynb")
    # No "get notified about Jupyter news?" prompt over the screenshots (and no fetch).
    settings = folder / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    jupyter = AnalystJupyter(
        folder,
        {"LOMAS_CONNECTION_FILE": str(demo.folder / "connection.json")},
        lab=True,
        extra_args=(
            # window.jupyterapp: the tests run JupyterLab's own commands (run all, new cell).
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={folder / 'settings'}",
        ),
    ).start()
    yield jupyter
    jupyter.stop()
    demo.stop()


@pytest.fixture(scope="module")
def page(lab) -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60 * SECONDS)
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
        browser.close()


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
    panel.get_by_text("PENGUIN", exact=True).first.click()
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
    assert _same_color(page, color, keyword), (color, keyword)


def test_completion_offers_a_column_of_the_dataset(page):
    _command(page, "notebook:insert-cell-below")
    _type_cell(page, "%%lomas_sql\nSELECT spe")
    page.keyboard.press("Tab")
    completer = page.locator(".jp-Completer")
    completer.get_by_text("species").first.wait_for(timeout=60 * SECONDS)
    _shot(page, "completion")


def _type_cell(page: Any, text: str) -> None:
    """Type into the active cell as an analyst would (Enter for new lines)."""
    page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").click()
    for number, line in enumerate(text.split("\n")):
        if number:
            page.keyboard.press("Enter")
        page.keyboard.type(line)


def _same_color(page: Any, computed: str, variable: str) -> bool:
    probe = page.evaluate(
        "(c) => { const d = document.createElement('div'); d.style.color = c;"
        " document.body.appendChild(d); const v = getComputedStyle(d).color; d.remove();"
        " return v; }",
        variable,
    )
    return computed == probe
