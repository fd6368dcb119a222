"""The widgets in a real browser: JupyterLab on 127.0.0.1, driven by Playwright with Debian's Chromium.

Opens tests/fixtures/latent_explorer.ipynb, runs all cells, waits until the LatentExplorer has
rendered (not "Loading widget..."), moves a slider with the keyboard and checks that the image
the browser shows has changed. Screenshots go to tests/artifacts/browser/ (the path is printed).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lecture_helpers import CHROMIUM, ONE_THREAD_ENV, lectures_with_widgets

FIXTURE = Path(__file__).parent / "fixtures" / "latent_explorer.ipynb"
ARTIFACTS = Path(__file__).parent / "artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 # a lecture runs in a background tab while the one before it is checked: no throttling
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
TIMEOUT_S = 45  # for each wait; the whole test takes about 20 s on an idle 2-core machine

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"Debian's Chromium is missing at {CHROMIUM}; .ci/install-chromium installs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_settings(settings_dir: Path) -> None:
    """Turn off the news and update checks, whose pop-up covers the page on a cold server."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def start_lab(root: Path, work: Path, port: int, token: str) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), GMCOURSE_SMOKE="1", MPLBACKEND="Agg",
               **ONE_THREAD_ENV)  # two lectures run at once: one checked, the next started
    write_lab_settings(work / "settings")
    log = work / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True"]
    with open(log, "wb") as out:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, log


def stop_lab(proc: subprocess.Popen) -> None:
    """End the server and the kernels it started (its own process group, nothing else)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def api(base: str, path: str, token: str):
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def wait_for(condition, what: str, log: Path, proc: subprocess.Popen, timeout: float = TIMEOUT_S, tick=None):
    """Poll ``condition()`` until it returns something truthy; fail with the server log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode} while waiting for {what}:\n{log.read_text()[-3000:]}")
        if tick is not None:
            tick()
        try:
            result = condition()
        except OSError:  # the server is not listening yet
            result = None
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; server log:\n{log.read_text()[-3000:]}")


def dismiss_dialogs(page) -> None:
    """Accept the "Select Kernel" dialog (the default is the notebook's kernel); close any other."""
    for dialog in page.locator(".jp-Dialog").all():
        if not dialog.is_visible():
            continue
        text = dialog.inner_text()
        button = ".jp-mod-accept" if "Select Kernel" in text else ".jp-mod-reject"
        dialog.locator(f"button{button}").first.click()


def picture(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)


def test_latent_explorer_renders_and_follows_its_slider_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright  # a test dependency; imported here to keep collection fast

    root, work = tmp_path / "root", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    shutil.copy(FIXTURE, root / FIXTURE.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    port, token = free_port(), uuid.uuid4().hex
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc, log = start_lab(root, work, port, token)
    try:
        wait_for(lambda: api(base, "/api/status", token), "the server to answer", log, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(TIMEOUT_S * 1000)
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{base}/lab/tree/{FIXTURE.name}?reset&token={token}")
                page.locator(".jp-Notebook").first.wait_for(state="visible")

                def kernel_idle():
                    sessions = api(base, "/api/sessions", token)
                    return any(s["path"].endswith(FIXTURE.name) and s["kernel"]["execution_state"] == "idle"
                               for s in sessions)

                wait_for(kernel_idle, "the notebook's kernel to be idle (via /api/sessions)", log, proc,
                         tick=lambda: dismiss_dialogs(page))
                dismiss_dialogs(page)
                page.evaluate("window.jupyterapp.commands.execute('runmenu:run-all')")

                image = page.locator(".jp-OutputArea-output img.widget-image")
                image.wait_for(state="visible")
                page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:')",
                    arg=image.element_handle())
                outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
                assert not any("Loading widget" in text for text in outputs), f"widget not rendered: {outputs}"
                sliders = page.locator(".jp-OutputArea-output .widget-slider")
                assert sliders.count() == 2, f"expected 2 sliders, found {sliders.count()}"
                widget_output = page.locator(".jp-OutputArea-output:has(img.widget-image)")
                widget_output.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "1_rendered.png"))
                widget_output.screenshot(path=str(ARTIFACTS / "1_widget.png"))
                src_before, png_before = image.get_attribute("src"), image.screenshot()
                readout = sliders.first.locator(".widget-readout")
                readout_before = readout.inner_text()

                handle = sliders.first.locator(".noUi-handle")
                handle.focus()
                for _ in range(4):
                    handle.press("ArrowRight")
                page.wait_for_function("([img, src]) => img.src !== src", arg=[image.element_handle(), src_before])
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                readout_after = readout.inner_text()
                page.screenshot(path=str(ARTIFACTS / "2_slider_moved.png"))
                widget_output.screenshot(path=str(ARTIFACTS / "2_widget.png"))
                png_after = image.screenshot()
                (ARTIFACTS / "image_before.png").write_bytes(png_before)
                (ARTIFACTS / "image_after.png").write_bytes(png_after)
                assert float(readout_after) > float(readout_before), \
                    f"slider readout: expected above {readout_before}, got {readout_after}"
                before, after = picture(png_before), picture(png_after)
                assert before.shape == after.shape, f"image size changed: {before.shape} -> {after.shape}"
                changed = float((np.abs(after - before) > 16).mean())
                assert changed > 0.01, f"expected the shown image to change, {changed:.2%} of pixels changed"
                assert not errors, f"page errors: {errors}"
            finally:
                browser.close()
        print(f"browser test took {time.monotonic() - started:.1f} s")
    finally:
        stop_lab(proc)


# --- every widget of every lecture, in the lecture notebook itself ------------------------------

LECTURES = Path(__file__).resolve().parents[1] / "lectures"


def move_first_control(output) -> str:
    """Move the first slider of a widget's output by four keyboard steps, or, without a slider,
    step its first number box (a seed) up by one; returns what was moved."""
    sliders = output.locator(".widget-slider .noUi-handle")
    if sliders.count():
        handle = sliders.first
        handle.focus()
        for _ in range(4):
            handle.press("ArrowRight")
        return "slider"
    box = output.locator("input[type=number]").first
    box.fill(str(int(box.input_value()) + 1))
    box.press("Enter")
    return "number box"


@pytest.fixture(scope="module")
def lab_with_lectures(tmp_path_factory):
    """One JupyterLab server (smoke mode) on a copy of lectures/, and one headless Chromium."""
    from playwright.sync_api import sync_playwright

    root, work = tmp_path_factory.mktemp("root"), tmp_path_factory.mktemp("work")
    shutil.copytree(LECTURES, root / "lectures", ignore=shutil.ignore_patterns("*.results.json"))
    port, token = free_port(), uuid.uuid4().hex
    base = f"http://127.0.0.1:{port}"
    proc, log = start_lab(root, work, port, token)
    try:
        wait_for(lambda: api(base, "/api/status", token), "the server to answer", log, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                yield browser, base, token, proc, log, {}  # {lecture: (page, errors, kernel_idle)}: started runs
            finally:
                browser.close()
    finally:
        stop_lab(proc)


WIDGET_LECTURES = lectures_with_widgets(LECTURES)


def start_lecture(lab, lecture: Path):
    """Open the lecture in a new page of the browser and run all its cells (no waiting); kept in
    the fixture's dict of started pages."""
    browser, base, token, proc, log, started = lab
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(4 * TIMEOUT_S * 1000)  # a whole lecture runs, in smoke mode
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/lab/tree/lectures/{lecture.name}?reset&token={token}")
    page.locator(".jp-Notebook").first.wait_for(state="visible")

    def kernel_idle():
        return any(s["path"].endswith(lecture.name) and s["kernel"]["execution_state"] == "idle"
                   for s in api(base, "/api/sessions", token))

    wait_for(kernel_idle, "the notebook's kernel to be idle", log, proc, tick=lambda: dismiss_dialogs(page))
    dismiss_dialogs(page)
    page.evaluate("window.jupyterapp.commands.execute('runmenu:run-all')")
    time.sleep(1)  # let the run start before anyone waits for the kernel to be idle again
    started[lecture] = (page, errors, kernel_idle)


@pytest.mark.parametrize("lecture", WIDGET_LECTURES, ids=lambda p: p.stem)
def test_every_widget_of_the_lecture_follows_its_control_in_chromium(lecture, lab_with_lectures):
    """The lecture notebook itself, run top to bottom in smoke mode in JupyterLab: no cell raises
    (nbval leaves these lectures to this test, see conftest.py), every widget renders (no "Loading
    widget..."), and moving its first control changes the picture the browser shows. The next
    lecture starts running in its own page (and kernel) while this one is checked, so that both
    cores work. Screenshots of each widget after the move go to tests/artifacts/browser/<lecture>/."""
    browser, base, token, proc, log, started = lab_with_lectures
    artifacts = ARTIFACTS / lecture.stem
    artifacts.mkdir(parents=True, exist_ok=True)
    if lecture not in started:
        start_lecture(lab_with_lectures, lecture)
    following = WIDGET_LECTURES[WIDGET_LECTURES.index(lecture) + 1:]
    if following and following[0] not in started:
        start_lecture(lab_with_lectures, following[0])
    page, errors, kernel_idle = started.pop(lecture)
    try:
        page.bring_to_front()
        wait_for(kernel_idle, "the lecture to run to the end", log, proc, timeout=8 * TIMEOUT_S)
        outputs = page.locator(".jp-OutputArea-output:has(img.widget-image)")
        n = outputs.count()
        assert n >= 1, "no widget rendered an image"
        texts = page.locator(".jp-OutputArea-output").all_inner_texts()
        assert not any("Loading widget" in text for text in texts), "a widget did not render"
        assert not any("Traceback" in text for text in texts), "a cell raised"
        for i in range(n):
            output = outputs.nth(i)
            output.scroll_into_view_if_needed()
            image = output.locator("img.widget-image").last
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            src_before, png_before = image.get_attribute("src"), image.screenshot()
            moved = move_first_control(output)
            page.wait_for_function("([img, src]) => img.src !== src", arg=[image.element_handle(), src_before])
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            output.screenshot(path=str(artifacts / f"widget_{i}.png"))
            before, after = picture(png_before), picture(image.screenshot())
            # a smoke-trained model may change its picture only slightly: any pixel that differs counts
            changed = float((after != before).mean()) if before.shape == after.shape else 1.0
            assert changed > 0, f"widget {i}: moving its {moved} left every pixel as it was"
        assert not errors, f"page errors: {errors}"
    finally:
        page.close()
