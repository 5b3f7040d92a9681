"""The course as students meet it: JupyterLab, started as ``python3 kit.py open`` does, in Chromium.

Headless Chromium (Debian's ``chromium`` package, driven by Playwright for Python, which never
downloads a browser here) opens lab 00 and lecture 01, runs all cells through the Run menu,
checks the outputs, moves lecture 01's eps slider and checks that the widget's figure is redrawn
and that the static fallback figure (see ``utils.viz.interactive``) is not shown as well.  The
last test opens a page of the course site offline and checks that its maths is typeset.
Screenshots go to ``build/screenshots/`` (git-ignored).

One-time set-up of the browser (the test is skipped, saying so, without it):
``sudo apt-get install chromium`` on Debian/Ubuntu, or set ``ADVX_CHROMIUM`` to a Chromium or
Chrome binary.  The browser never reaches the network: every request off this machine is
aborted.  Nothing is saved: autosave is off and the notebooks' bytes are checked afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
LAB = "labs/00_start_here_lab.ipynb"
SOLUTION = "solutions/00_start_here_lab.ipynb"
LECTURE = "lectures/01_adversarial_examples.ipynb"
TOKEN = "advx-browser-test"
RUN_ALL_TIMEOUT_S = 900  # lecture 01 takes about 2 minutes on 2 quiet cores; CI may be busier
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAB_SETTINGS = {  # JupyterLab user settings for the test: no saving, every cell in the page
    "@jupyterlab/docmanager-extension/plugin": '{"autosave": false}',
    "@jupyterlab/notebook-extension/tracker": '{"windowingMode": "none"}',
    "@jupyterlab/apputils-extension/notification": '{"fetchNews": "false", "checkForUpdates": false}',
}


def find_chromium() -> str | None:
    """``ADVX_CHROMIUM``, else Debian's ``chromium`` (or ``chromium-browser``) on the PATH."""
    chosen = os.environ.get("ADVX_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed: install it once with `sudo apt-get install chromium` "
           "(Debian/Ubuntu) or set ADVX_CHROMIUM to a Chromium/Chrome binary")


def report(config, line: str) -> None:
    """Print past pytest's output capture, so the wall times show in every run."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[browser] {line}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kit_open_command(extra: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment ``python3 kit.py open EXTRA`` runs (read from kit.py itself)."""
    spec = importlib.util.spec_from_file_location("kit_for_test", ROOT / "kit.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)  # a private copy of the module: patching it touches nothing else
    seen = {}
    kit.ensure_environment = lambda extras: None  # the test already runs inside the environment
    kit.say = lambda message: None
    kit.subprocess = type("Recorder", (), {"call": staticmethod(
        lambda command, cwd, env: seen.update(command=command, cwd=cwd, env=env) or 0)})
    kit.open_course(extra)
    command = [sys.executable, *seen["command"][1:]]  # the interpreter running these tests
    return command, seen["env"]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, pytestconfig):
    """JupyterLab as ``kit.py open`` starts it, on a free local port, with a known token."""
    home = tmp_path_factory.mktemp("jupyterlab")
    for plugin, text in LAB_SETTINGS.items():
        path = home / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    port = free_port()
    command, env = kit_open_command([
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}",  # not beside the notebooks
        "--LabApp.expose_app_in_browser=True"])  # window.jupyterapp, to read the cells' outputs
    env = dict(env, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"))
    log = open(home / "server.log", "wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (home / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; requests off this machine are aborted and listed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: `pip install -e .[dev]` (or `python3 kit.py "
                    "test`, which installs it); it drives the installed Chromium, no download")
    outside = []

    def local_only(route):
        if re.match(r"(https?://(127\.0\.0\.1|localhost)[:/]|file:|data:|blob:)", route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        context.route("**/*", local_only)
        context.outside = outside
        yield context
        context.close()


@pytest.fixture
def untouched():
    """Fails the test if it changed the course's notebook folders (JupyterLab must not save)."""
    def digests():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
                for folder in ("lectures", "labs", "solutions") for p in (ROOT / folder).rglob("*")}
    before = digests()
    yield
    after = digests()
    assert after == before, ("the browser session changed or left files: "
                             f"{sorted(str(p) for p in set(after) ^ set(before)) or 'a notebook'}")


# --------------------------------------------------------------------------------------------
# driving JupyterLab

def open_notebook(browser, url: str, path: str):
    """A new tab with ``path`` open in JupyterLab and its kernel started and idle."""
    page = browser.new_page()
    page.goto(f"{url}/lab/tree/{path}?reset&token={TOKEN}")  # reset: no tabs of earlier tests
    page.wait_for_function(
        """path => {
            const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            if (!widget || !widget.context || widget.context.path !== path) return false;
            const kernel = widget.sessionContext.session && widget.sessionContext.session.kernel;
            if (!kernel || kernel.status !== 'idle' || kernel.connectionStatus !== 'connected')
                return false;
            window.advxNotebook = widget;
            return true;
        }""", arg=path, timeout=120_000)
    return page


def run_all(page) -> float:
    """Run > Run All Cells, as a student would; returns the seconds until no cell is queued."""
    started = time.perf_counter()
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    page.wait_for_function(  # the run has begun: some prompt shows [*] or a number
        "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".some(p => /\\[[*0-9]/.test(p.textContent))", timeout=60_000)
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
        ".some(p => p.textContent.includes('*'))",
        timeout=RUN_ALL_TIMEOUT_S * 1000, polling=1000)
    return time.perf_counter() - started


def cell_outputs(page) -> list[dict]:
    """Per code cell: its execution count and outputs (type, error name and value, mimetypes)."""
    return page.evaluate("""() => window.advxNotebook.content.model.toJSON().cells
        .filter(cell => cell.cell_type === 'code')
        .map(cell => ({
            count: cell.execution_count,
            source: (Array.isArray(cell.source) ? cell.source.join('') : cell.source).slice(0, 80),
            outputs: cell.outputs.map(o => ({type: o.output_type, ename: o.ename || null,
                                             evalue: o.evalue || null,
                                             mimetypes: Object.keys(o.data || {})}))}))""")


def errors_in(cells: list[dict]) -> list[str]:
    return [f"cell {cell['source']!r}: {o['ename']}: {o['evalue']}"
            for cell in cells for o in cell["outputs"] if o["type"] == "error"]


def close(page) -> None:
    """Shut the notebook's kernel down and close the tab (nothing is saved)."""
    page.evaluate("() => window.advxNotebook.sessionContext.shutdown()")
    page.close()


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# --------------------------------------------------------------------------------------------
# the tests

def test_lab00_as_handed_out_stops_only_at_the_first_answer_stub(jupyterlab, browser, untouched,
                                                                  pytestconfig):
    """The generated lab runs in JupyterLab until the first unanswered question, and no further.

    "Run All" stops at the first error, so exactly one error is expected: the NotImplementedError
    of the first answer stub, with every cell before it run cleanly.
    """
    page = open_notebook(browser, jupyterlab, LAB)
    seconds = run_all(page)
    cells = cell_outputs(page)
    errors = [(i, o) for i, cell in enumerate(cells) for o in cell["outputs"] if o["type"] == "error"]
    assert [o["ename"] for _, o in errors] == ["NotImplementedError"], errors_in(cells)
    first_error = errors[0][0]
    page.locator(".jp-CodeCell").nth(first_error).evaluate("c => c.scrollIntoView({block: 'center'})")
    shoot(page, "lab00_as_handed_out")
    assert all(cell["count"] is not None for cell in cells[:first_error + 1]), cells
    close(page)
    report(pytestconfig, f"{LAB}: run all {seconds:.0f} s, stopped at the first answer stub "
                         f"(code cell {first_error + 1} of {len(cells)})")


def test_lab00_solution_runs_without_errors(jupyterlab, browser, untouched, pytestconfig):
    page = open_notebook(browser, jupyterlab, SOLUTION)
    seconds = run_all(page)
    cells = cell_outputs(page)
    shoot(page, "lab00_solution")
    assert errors_in(cells) == []
    assert all(cell["count"] is not None for cell in cells), "not every cell ran"
    close(page)
    report(pytestconfig, f"{SOLUTION}: run all {seconds:.0f} s, no errors")


def test_lecture01_runs_and_its_eps_slider_redraws_one_figure(jupyterlab, browser, untouched,
                                                              pytestconfig):
    started = time.perf_counter()
    page = open_notebook(browser, jupyterlab, LECTURE)
    seconds = run_all(page)
    cells = cell_outputs(page)
    assert errors_in(cells) == []
    assert all(cell["count"] is not None for cell in cells), "not every cell ran"

    # the cell of the eps slider: its only output is the widget, which also carries the static
    # figure as an image/png fallback -- present in the output, but not shown
    slider = page.locator(".widget-slider", has=page.locator("label", has_text=re.compile(r"^eps$")))
    assert slider.count() == 1, "lecture 01 should show one eps slider"
    cell = page.locator(".jp-CodeCell", has=slider)
    widget_outputs = [o for c in cells for o in c["outputs"]
                      if "application/vnd.jupyter.widget-view+json" in o["mimetypes"]]
    assert any("image/png" in o["mimetypes"] for o in widget_outputs), (
        "the widget output carries no static fallback figure (utils.viz.interactive)")
    images = cell.locator(".jp-OutputArea-output img")
    in_widget = cell.locator(".widget-output img")
    assert images.count() == 1 and in_widget.count() == 1, (
        f"the slider's cell shows {images.count()} images, {in_widget.count()} of them in the "
        "widget: the figure should be shown once, by the widget")
    widget = cell.locator(".widget-vbox").first
    centre = "w => w.scrollIntoView({block: 'center'})"
    widget.evaluate(centre)
    shoot(page, "lecture01_widget_before")
    before = in_widget.get_attribute("src")

    # move the slider: type a new value into its readout, as a student can
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.2")
    page.keyboard.press("Enter")
    moved = time.perf_counter()
    page.wait_for_function(
        """([cellIndex, before]) => {
            const img = document.querySelectorAll('.jp-CodeCell')[cellIndex]
                .querySelector('.widget-output img');
            return img && img.src !== before;
        }""", arg=[cell.evaluate("c => [...document.querySelectorAll('.jp-CodeCell')].indexOf(c)"),
                   before], timeout=120_000)
    redraw = time.perf_counter() - moved
    assert slider.locator(".noUi-handle").get_attribute("aria-valuenow") in ("0.2", "0.200")
    after = in_widget.get_attribute("src")
    assert after != before and after.startswith("data:image/png")
    assert images.count() == 1 and in_widget.count() == 1, "the redraw left more than one figure"
    assert cell.locator(".widget-output [data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    widget.evaluate(centre)
    shot = shoot(page, "lecture01_widget_after")
    assert browser.outside == [], f"the page asked for things off this machine: {browser.outside}"
    close(page)
    report(pytestconfig, f"{LECTURE}: run all {seconds:.0f} s, eps 0.05 -> 0.2 redrawn in "
                         f"{redraw:.1f} s; test wall time {time.perf_counter() - started:.0f} s; "
                         f"screenshot {shot.relative_to(ROOT)}")


@pytest.mark.parametrize("lecture", [LECTURE, "lectures/07_evaluating_robustness.ipynb"])
def test_site_page_shows_its_maths_offline(lecture, browser, tmp_path, pytestconfig):
    """A page of the course site, opened from disk with the network cut, typesets its maths."""
    from utils import site

    name = Path(lecture).stem
    site.build(tmp_path / "site", only=[f"lectures/{name[:3]}"], quiet=True)
    page = browser.new_page()
    page.goto((tmp_path / "site" / "lectures" / f"{name}.html").as_uri())
    page.wait_for_function("() => window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0",
                           timeout=120_000)
    typeset, failed, broken_images, images = page.evaluate("""() => [
        document.querySelectorAll('.MathJax, .MathJax_Display').length,
        document.querySelectorAll('.MathJax_Error, merror').length,
        [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
        document.images.length]""")
    page.locator(".MathJax_Display").first.scroll_into_view_if_needed()
    shoot(page, f"site_lecture{name[:2]}_maths")
    assert typeset > 10 and failed == 0, f"{typeset} formulas typeset, {failed} failed"
    assert images > 0 and broken_images == 0
    assert browser.outside == [], f"the page asked for things off this machine: {browser.outside}"
    page.close()
    report(pytestconfig, f"site page of {lecture}: {typeset} formulas typeset offline, "
                         f"{images} images")
