"""A real browser runs chapter 13 (gptoss_edu/viz/explorer.py): JupyterLab on a loopback port,
Debian's chromium driven by playwright, "run all cells", then the expert explorer must render
its token cells and a click on a token must change the detail view. A screenshot is saved to
test-artifacts/browser_ch13.png.

Needs /usr/bin/chromium (`.ci/setup-browser.sh`) and the playwright package; skips otherwise.
The notebook is copied into a temporary root, so running it never touches the repository.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "book/13_looking_inside.ipynb"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return (
            f"{CHROMIUM} not found: install it with .ci/setup-browser.sh (apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install 'gptoss-edu[test]')"
    try:
        import ipywidgets  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab and ipywidgets are needed to render the explorer"
    if not (ROOT / NOTEBOOK).is_file():
        return f"{NOTEBOOK} does not exist"
    return None


SKIP = _skip_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(SKIP is not None, reason=SKIP or ""),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def jupyter_lab(tmp_path):
    root = tmp_path / "root"
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / NOTEBOOK, root / NOTEBOOK)
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), MPLBACKEND="Agg")
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1",
        f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
    ]  # fmt: skip
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_server(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_chapter13_explorer_renders_and_reacts_to_a_click(jupyter_lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(jupyter_lab + "lab/tree/" + NOTEBOOK, timeout=60_000)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session",
                timeout=60_000,
            )
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            tokens = page.locator(".gptoss-explorer .gptoss-token")
            tokens.first.wait_for(timeout=150_000)
            assert tokens.count() >= 3
            assert page.locator(".gptoss-explorer .gptoss-cell").count() >= 3 * 4
            detail = page.locator(".gptoss-explorer .gptoss-detail").first
            try:
                page.wait_for_function(  # the HTML widget may render a moment after the buttons
                    "el => el.textContent.includes('token 0')",
                    arg=detail.element_handle(),
                    timeout=30_000,
                )
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "browser_ch13_failed.png"))
                print(detail.evaluate("el => el.outerHTML")[:3000])
                raise
            before = detail.text_content()
            tokens.nth(2).scroll_into_view_if_needed()
            tokens.nth(2).click()
            page.wait_for_function(
                "el => el.textContent.includes('token 2')",
                arg=detail.element_handle(),
                timeout=30_000,
            )
            after = detail.text_content()
            assert after != before and "layer 3" in after
            detail.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "browser_ch13.png"), full_page=False)
        finally:
            browser.close()
