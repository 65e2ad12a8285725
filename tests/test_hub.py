"""A class on JupyterHub (hub/jupyterhub_config.py): two students log in at the same time and run a lesson to its end.

The teacher's run fills the cache first (lesson 04 at its tiny settings); the hub shares it read-only.
Each student gets a home folder with the lessons' student copies, limits (cgroups where the hub may
write them) and ftlab's kernel; both run their filled copy of lesson 04 at once in JupyterLab, in
headless Chromium. Then: no errors, every exercise check passes, the shared cache is unchanged and
served both (their own caches hold none of its entries), and the kernels ran inside their limits.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from servers import free_port, serving
from test_browser import _STATE, CHROMIUM, FLAGS, SHOTS
from test_grading import _fill
from test_notebooks import TINY

import ftlab as ft
from ftlab.lab import grading, lessons

ROOT = Path(__file__).resolve().parent.parent
PROXY = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
LESSON = "04_overfitting_controls"
STUDENTS = ("ada", "bo")
PASSWORD = "class-of-2026"

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium)"),
              pytest.mark.skipif(not PROXY.exists(), reason="no hub/node_modules (make install runs npm ci there)")]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _kernel_pids(user: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"JUPYTERHUB_USER={user}".encode() in env and b"ipykernel_launcher" in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The teacher's cache (filled by a run of the lesson), then the hub over it; stopped whatever happens."""
    shared = tmp_path / "shared-cache"
    own = ft.files.cache_dir()
    for part in ("elpv", "weights"):                 # the teacher's decoded ELPV and converted weights (hard links)
        if (own / part).is_dir():
            shutil.copytree(own / part, shared / part, copy_function=_link)
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)
    monkeypatch.setenv("FTLAB_CACHE", str(shared))
    lessons.execute(lessons.lesson_paths([LESSON])[0], tmp_path / "teacher.ipynb", TINY[LESSON][0], tmp_path)
    monkeypatch.undo()
    for folder in [shared, *[p for p in shared.rglob("*") if p.is_dir()]]:     # shared read-only
        os.chmod(folder, 0o555)
    url, state = f"http://127.0.0.1:{free_port()}", tmp_path / "hub"
    env = {**{k: v for k, v in os.environ.items() if k not in ("FTLAB_STRICT_CLAIMS", "FTLAB_CACHE")},
           "FTLAB_HUB_URL": url, "FTLAB_HUB_STATE": str(state), "FTLAB_HUB_HOMES": str(tmp_path / "homes"),
           "FTLAB_SHARED_CACHE": str(shared), "FTLAB_HUB_PASSWORD": PASSWORD, "FTLAB_HUB_MEM": "4G",
           "FTLAB_HUB_CPUS": "1", "FTLAB_HUB_SERVER_ARGS": "--LabServerApp.expose_app_in_browser=True",
           "FTLAB_HUB_API_PORT": str(free_port()), "FTLAB_HUB_PROXY_API_PORT": str(free_port())}
    cmd = [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(ROOT / "hub" / "jupyterhub_config.py")]
    try:
        with serving(cmd, f"{url}/hub/api", tmp_path / "hub.log", env, tmp_path, "JupyterHub", wait_s=60):
            yield url, tmp_path, shared
    finally:
        for folder in [shared, *[p for p in shared.rglob("*") if p.is_dir()]]:
            os.chmod(folder, 0o755)
        for group in [*Path("/sys/fs/cgroup").glob("*/ftlab-hub/*"), *Path("/sys/fs/cgroup").glob("*/ftlab-hub")]:
            try:                                            # the students' cgroups, once their processes are gone
                group.rmdir()
            except OSError:
                pass


def _filled_copy(home: Path) -> Path:
    """What the student hands in: their copy with the exercises written, at the lesson's tiny settings."""
    import papermill as pm

    source = lessons.lesson_paths([LESSON])[0]
    path = home / "lessons" / source.name
    filled = _fill(nbformat.read(path, as_version=4), nbformat.read(source, as_version=4))
    nbformat.write(filled, path)
    pm.execute_notebook(str(path), str(path), parameters=TINY[LESSON][0], prepare_only=True, progress_bar=False)
    return path


def test_two_students_run_a_lesson_at_once_on_the_class_hub(hub):
    from playwright.sync_api import sync_playwright

    url, tmp, shared = hub
    before = _files(shared)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        pages = {}
        for name in STUDENTS:                                   # both log in; their servers start side by side
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{url}/hub/login")
            page.fill("input[name=username]", name)
            page.fill("input[name=password]", PASSWORD)
            page.click("#login_submit")
            pages[name] = page
        for name, page in pages.items():
            page.wait_for_url(f"**/user/{name}/lab**", timeout=120_000)
            home = tmp / "homes" / name
            copies = sorted(p.name for p in (home / "lessons").glob("*.ipynb"))
            assert copies == sorted(p.name for p in lessons.lesson_paths())     # the class's student copies
            assert "raise NotImplementedError()" in (home / "lessons" / f"{LESSON}.ipynb").read_text()
            _filled_copy(home)
            page.goto(f"{url}/user/{name}/lab/tree/lessons/{LESSON}.ipynb")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus === 'idle'",
                                   timeout=120_000)
        for page in pages.values():                             # Run All in both, then wait for both
            page.locator(".jp-Notebook .jp-Cell").first.click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator("li[data-command='runmenu:run-all']").click()
        limits = {}
        deadline, done = time.time() + 600, {}
        while len(done) < len(pages) and time.time() < deadline:
            time.sleep(2)
            for name, page in pages.items():
                if name not in limits and _kernel_pids(name):
                    limits[name] = [Path(f"/proc/{pid}/cgroup").read_text() for pid in _kernel_pids(name)]
                state = page.evaluate(_STATE)
                if state and (state["errors"] or (state["pending"] == 0 and state["running"] == 0
                                                  and state["kernel"] == "idle")):
                    done[name] = state
        for name, page in pages.items():
            page.screenshot(path=str(SHOTS / f"hub-{name}.png"))
            assert name in done, f"{name}'s lesson did not finish"
            assert not done[name]["errors"], done[name]["errors"]
            reports = re.findall(r"Exercise (\S+) · .*?: (\d+) of (\d+) checks pass", page.locator(".jp-Notebook").inner_text())
            assert len(reports) == 2 and all(got == of for _, got, of in reports), reports
        browser.close()
    assert _files(shared) == before                                       # read-only: nothing written
    for name in STUDENTS:
        own = tmp / "homes" / name / ".cache" / "ftlab"
        mine = {p.name for p in own.rglob("*.pt")} if own.exists() else set()
        assert not mine & {Path(k).name for k in before}, "a student recomputed what the class's cache holds"
        if os.geteuid() == 0 and Path("/sys/fs/cgroup/memory").is_dir():   # the limits took effect (root, cgroup v1)
            assert limits.get(name) and all(f"/ftlab-hub/{name}" in c for c in limits[name])
            limit = Path(f"/sys/fs/cgroup/memory/ftlab-hub/{name}/memory.limit_in_bytes").read_text().strip()
            assert int(limit) == 4 * 2 ** 30


def test_the_first_login_hook_never_writes_over_a_students_lessons(tmp_path, monkeypatch):
    """lessons_for copies the student copies once; a second login leaves the student's work as it is."""
    import runpy
    import types

    monkeypatch.setenv("FTLAB_HUB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FTLAB_HUB_PASSWORD", PASSWORD)
    config = runpy.run_path(str(ROOT / "hub" / "jupyterhub_config.py"),
                            init_globals={"get_config": lambda: __import__("traitlets.config").config.Config()})
    spawner = types.SimpleNamespace(home_dir=str(tmp_path / "home" / "cy"))
    config["lessons_for"](spawner)
    mine = tmp_path / "home" / "cy" / "lessons" / f"{LESSON}.ipynb"
    cells = nbformat.read(mine, as_version=4).cells
    assert any(grading.exercise_ids(c.source) for c in cells) and "BEGIN SOLUTION" not in mine.read_text()
    mine.write_text("my own work")
    config["lessons_for"](spawner)
    assert mine.read_text() == "my own work"
    shutil.rmtree(tmp_path / "state")
