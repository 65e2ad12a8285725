"""The lessons in real JupyterLab, driven in headless Chromium by Playwright; their slides, the course site.

Starts JupyterLab on 127.0.0.1 (a free port, a token) over copies of the lessons with tiny classroom
parameters and one of them changed (papermill writes them in), runs every cell through the UI (Run > Run
All Cells), and checks what a student sees: no error output, figures rendered as images, widgets
rendered (not "Loading widget..." / "Error displaying widget"), and the FreezeExplorer slider changing
the trainable parameter count. Then a lesson as RISE slides, and the Jupyter Book site of a run.
Screenshots go to ``runs/browser-test/`` (gitignored).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, serving
from test_notebooks import NOTEBOOKS, TINY, _sane

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent.parent / "runs" / "browser-test"

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium)")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over parameterised copies of the lessons; stopped at the end whatever happens."""
    import papermill as pm

    root = tmp_path_factory.mktemp("lab")
    for path in NOTEBOOKS:
        tiny, changed = TINY[path.stem]                  # papermill's parameters: the tiny settings, one of them changed
        pm.execute_notebook(str(path), str(root / path.name), parameters={**tiny, **changed, "OUT_DIR": str(root / "out")},
                            prepare_only=True, progress_bar=False)
    settings = root / ".settings"      # render every cell (no windowing) and do not ask about news
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none"}')
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port, token = free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", "--LabApp.news_url=",
           "--LabServerApp.expose_app_in_browser=True", "--allow-root",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root / '.workspaces'}"]
    env = {k: v for k, v in os.environ.items() if k != "FTLAB_STRICT_CLAIMS"}   # tiny settings: claims may not hold
    with serving(cmd, f"http://127.0.0.1:{port}/api/status?token={token}", root / "lab.log", env, root, "JupyterLab"):
        yield f"http://127.0.0.1:{port}", token, root


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


_STATE = """() => {
  const nb = window.jupyterapp.shell.currentWidget;
  if (!nb || !nb.content || !nb.sessionContext || !nb.sessionContext.session) return null;
  const cells = nb.content.widgets.filter(c => c.model.type === 'code');
  return {
    kernel: nb.sessionContext.kernelDisplayStatus,
    pending: cells.filter(c => !c.model.executionCount).length,
    running: cells.filter(c => c.promptNode && c.promptNode.textContent.includes('*')).length,
    errors: cells.flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                   .map(o => o.ename + ': ' + o.evalue)),
  };
}"""


def _run_all(page, timeout_s: float) -> dict:
    page.locator(".jp-Notebook .jp-Cell").first.click()          # the notebook has the focus
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
    try:
        page.wait_for_function("() => [...document.querySelectorAll('.jp-InputPrompt')]"
                               ".some(p => /\\[[*0-9]+\\]/.test(p.textContent))", timeout=30_000)
    except Exception:                   # the menu did not start it: the same command, from the palette
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Shift+C")
        page.keyboard.type("Run All Cells")
        page.keyboard.press("Enter")
    deadline = time.time() + timeout_s
    state = None
    while time.time() < deadline:
        time.sleep(2)
        state = page.evaluate(_STATE)
        if state and (state["errors"] or (state["pending"] == 0 and state["running"] == 0
                                          and state["kernel"] == "idle")):
            return state
    raise AssertionError(f"cells did not finish in {timeout_s} s: {state}")


@pytest.mark.parametrize("lesson", [p.stem for p in NOTEBOOKS])
def test_lesson_in_jupyterlab(lab, browser, lesson):
    url, token, root = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/lab/workspaces/{lesson}/tree/{lesson}.ipynb?reset&token={token}")   # a clean workspace
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus === 'idle'",
                               timeout=120_000)
        kernel_name = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name")
        assert kernel_name == "python3"
        state = _run_all(page, timeout_s=420)
        page.screenshot(path=str(SHOTS / f"{lesson}-end.png"))
        assert not state["errors"], state["errors"]
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                            ":text('Traceback')").count() == 0
        images = page.locator(".jp-RenderedImage img")
        assert images.count() >= 2
        metrics = json.loads((root / "out" / "metrics" / f"{lesson}.json").read_text())    # what the lesson recorded
        _sane(lesson, metrics)
        if lesson.startswith("01"):
            assert metrics["classes"] == 4                     # the changed parameter reached the lesson
        assert page.get_by_text("Error displaying widget").count() == 0
        page.wait_for_function("() => !document.body.innerText.includes('Loading widget...')", timeout=30_000)
        if lesson.startswith("03"):
            _check_freeze_explorer(page)
        images.first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{lesson}-figure.png"))
    finally:
        page.close()
        _shutdown_kernels(url, token)


def _shutdown_kernels(url: str, token: str) -> None:
    """Free the CPU for the next lesson: stop every kernel through the server's REST API."""
    import json

    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels", headers=headers)) as r:
        kernels = json.load(r)
    for k in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels/{k['id']}", method="DELETE", headers=headers))


def _trainable_text(page) -> str:
    return page.locator(".widget-html-content:has-text('trainable:')").first.inner_text()


def _check_freeze_explorer(page) -> None:
    """Move the slider two steps, wait for the widget's final state and check it is the slider's: the
    summary names the slider's value, and its trainable count is what train_top gives for that value."""
    import ftlab as ft

    handle = page.locator(".widget-slider .noUi-handle").last
    handle.scroll_into_view_if_needed()
    page.wait_for_selector(".widget-html-content:has-text('trainable:')", timeout=30_000)
    before = _trainable_text(page)
    assert re.search(r"^1 of \d+ layer groups training; trainable: 2,562 of", before), before
    handle.focus()
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    readout = page.locator(".widget-slider .widget-readout").last
    page.wait_for_function("(e) => e.innerText.trim() === '3'", arg=readout.element_handle(), timeout=30_000)
    page.wait_for_function(
        "() => { const e = [...document.querySelectorAll('.widget-html-content')].find(x => x.innerText.includes('trainable:'));"
        " return e && e.innerText.startsWith('3 of '); }", timeout=60_000)
    after = _trainable_text(page)
    count = lambda text: int(re.search(r"trainable: ([\d,]+) of", text).group(1).replace(",", ""))  # noqa: E731
    model = ft.vision.pretrained(num_classes=2, weights=None)
    ft.train_top(model, 3)
    assert count(after) == ft.trainable_count(model) > count(before), (before, after)
    page.screenshot(path=str(SHOTS / "03_partial_unfreezing-freeze-explorer.png"))


def test_slides_open_with_rise(lab, browser):
    """A lesson as RISE slides (jupyterlab-rise): its chosen cells are reveal.js slides, the title first."""
    import nbformat

    url, token, root = lab
    lesson = "02_head_only"
    nb = nbformat.read(root / f"{lesson}.ipynb", as_version=4)
    slides = sum(c.metadata.get("slideshow", {}).get("slide_type") in ("slide", "subslide") for c in nb.cells)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{url}/rise/{lesson}.ipynb?token={token}")
        page.wait_for_selector(".reveal .slides section", timeout=120_000)
        page.wait_for_function(f"() => document.querySelectorAll('.reveal .slides section').length >= {slides}",
                               timeout=60_000)
        assert "Train only a new head" in page.locator(".reveal .slides section.present").first.inner_text()
        page.wait_for_timeout(1000)                                         # the transition
        page.screenshot(path=str(SHOTS / f"{lesson}-slides-title.png"))
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.querySelector('.reveal .slides section.present') &&"
                               " !document.querySelector('.reveal .slides section.present').innerText.includes('Learning goals')",
                               timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / f"{lesson}-slides.png"))
    finally:
        page.close()
        _shutdown_kernels(url, token)


def test_course_site_from_executed_lessons(tmp_path, browser, capfd, monkeypatch):
    """`ftlab lessons --jobs 2` runs two lessons at once (tiny settings) and writes their summary in lesson order;
    `ftlab site` builds the Jupyter Book from that run; Chromium opens the index and a lesson page with its figures
    and claims table."""
    import nbformat

    from ftlab.lab import cli, lessons

    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)
    lesson, other = "02_head_only", "05_experiments"
    monkeypatch.setattr(lessons, "expected_seconds", lambda: {"02": 1.0, "05": 2.0})   # the order, not sizing.json's figures
    run = tmp_path / "run"
    assert lessons.run_lessons(run, lessons.lesson_paths([lesson, other]), {**TINY[other][0], **TINY[lesson][0]},
                               jobs=2) == 0
    out, err = capfd.readouterr()                  # the kernel's own output too (file descriptors)
    assert "TCP without encryption" not in out + err and "[IPKernelApp]" not in out + err
    assert f"2 at a time, {max(1, lessons.cores() // 2)} torch thread(s) each" in out
    assert f"2 at a time, {max(1, lessons.cores() // 2)} torch thread(s) each; the longest first" in out
    assert out.index(f"{other} ") < out.index(f"{lesson} ")              # the longer lesson (as given below) first
    for name in (lesson, other):
        executed = nbformat.read(run / f"{name}.ipynb", as_version=4)
        assert not [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert (run / "summary.md").read_text().count(name) == 1 and name in (run / "summary.csv").read_text()
        _sane(name, json.loads((run / "metrics" / f"{name}.json").read_text()))
    summary = (run / "summary.csv").read_text()
    assert summary.index(lesson) < summary.index(other)                  # in lesson order, whichever ended first
    site = tmp_path / "site"
    assert cli.main(["site", "--from", str(run), "--out", str(site)]) == 0
    assert cli.main(["site", "--from", str(run), "--out", str(site)]) == 2          # never over a site by accident
    assert "--overwrite" in capfd.readouterr().err
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto((site / "index.html").as_uri())
        assert "summary" in page.content() and page.locator(f"a[href*='{lesson}']").count() >= 1
        page.locator(f"a[href*='{lesson}']").first.click()
        page.wait_for_selector("img", timeout=30_000)
        assert page.locator("main img, article img").count() >= 2          # the lesson's figures
        assert page.get_by_text("holds").count() >= 1                      # its claims table, with verdicts
        assert "BEGIN SOLUTION" not in page.content() and "YOUR CODE HERE" in page.content()   # no solutions shown
        page.screenshot(path=str(SHOTS / "site-lesson.png"), full_page=False)
    finally:
        page.close()
