"""The web page end to end in a real browser: Debian's Chromium driven by Playwright, against an
embedded stack (gateway and both workers as processes, the shipped models).

One stack and one browser for the module. The stack is handed over as soon as its gateway answers:
the tests that need the gateway alone (a wrong key, form errors, cancelling a job still queued) run
while the workers start, and the job that is looked at last waits in the queue for them. The test
data (the phantom of ``tests/conftest.py``) is written by a process of its own meanwhile, and the
tests that submit jobs wait for it (:func:`_data_ready`): the workers read it at their first job. Every
page records what it requested and any CSP violation, and each test ends by checking that nothing
left the page's origin and that the API key appeared in no address. Screenshots of each step go to
``$CARDIOSYNTH_UI_SCREENSHOTS`` (default: a temporary folder).

Skipped where Playwright or Chromium is missing; under CI (``CI=true``) that is a failure instead:
``scripts/test.sh`` installs both (``apt-get install chromium``, ``playwright`` from the test extra;
never ``playwright install``, which downloads a browser of its own).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from cardiosynth.embedded import Stack, running_stack

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CARDIOSYNTH_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",  # WebGL2 still works: Chromium falls back to its software renderer
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "ui-test-key-5f0c2a9e71"
LAPTOP = {"width": 1366, "height": 768}


def _missing(reason: str) -> None:
    # In CI the browser tests are the point: a missing browser fails the run, never skips it.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (the test extra: pip install -c constraints.txt -e '.[test]')")
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CARDIOSYNTH_CHROMIUM)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


# tests/conftest.py's phantom_root, written beside its place and renamed: it appears whole or not at all.
PHANTOM = """
import os, sys
from pathlib import Path
from cardiosynth.data.phantom.generator import generate_dataset
out = Path(sys.argv[1])
partial = out.with_name(out.name + ".partial")
generate_dataset(partial, n_subjects=5, seed=0, workers=1)
os.replace(partial, out)
"""


@dataclass
class Data:
    path: Path
    maker: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    path = tmp_path_factory.mktemp("ui-data") / "phantom"
    maker = subprocess.Popen([sys.executable, "-c", PHANTOM, str(path)])
    yield Data(path, maker)
    if maker.poll() is None:
        maker.kill()
        maker.wait()


def _data_ready(data: Data) -> None:
    assert data.maker.wait(timeout=600) == 0, "the test data could not be made"
    assert (data.path / "training").is_dir()


@pytest.fixture(scope="module")
def stack(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv("CARDIOSYNTH_MODELS", raising=False)  # the shipped models
        state = tmp_path_factory.mktemp("ui-stack")
        with running_stack(state, data=data.path, api_key=KEY, wait_for_workers=False) as running:
            yield running
            # An idle worker's warm shutdown waits about 12 s (Celery's timer thread); nothing is left
            # to finish here, so a short grace before they are killed.
            assert running.supervisor is not None
            running.supervisor.stop_all(timeout_s=1.0)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("CARDIOSYNTH_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Recorder:
    """What a page did: every request's address and API-key header, CSP violations, page errors."""

    origin: str
    urls: list[str] = field(default_factory=list)
    keyed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        outside = [u for u in self.urls if not u.startswith(self.origin + "/") and not u.startswith("data:")]
        assert outside == [], f"requests outside {self.origin}: {outside}"
        assert [u for u in self.urls if KEY in u] == [], "the API key appeared in an address"
        assert self.errors == [], self.errors


# Registered before the page's own scripts: a violation of the CSP becomes a console error we see.
CSP_WATCH = """
document.addEventListener('securitypolicyviolation', (e) =>
  console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture
def page(data: Data, browser: Any, stack: Stack) -> Iterator[tuple[Any, Recorder]]:
    # ``data`` first: its process writes the test data while the browser and the stack start.
    context = browser.new_context(viewport=LAPTOP)
    # Generous: on a loaded 2-core machine the software WebGL renderer takes tens of seconds per step.
    context.set_default_timeout(120_000)
    tab = context.new_page()
    record = Recorder(stack.url)
    tab.add_init_script(CSP_WATCH)

    def on_request(request: Any) -> None:
        record.urls.append(request.url)
        if request.headers.get("x-api-key"):
            record.keyed.append(request.url)

    tab.on("request", on_request)
    tab.on("pageerror", lambda exc: record.errors.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: record.errors.append(msg.text) if "CSP violation" in msg.text else None,
    )
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab, record
    context.close()


def _sign_in(tab: Any, stack: Stack, key: str = KEY) -> Any:
    response = tab.goto(stack.url + "/ui/")
    tab.get_by_label("API key").fill(key)
    tab.get_by_label("API key").press("Enter")  # the keyboard, as someone without a mouse signs in
    return response


def _pixels(tab: Any, selector: str) -> np.ndarray:
    from PIL import Image

    png = tab.locator(selector).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)


def _changed(tab: Any, selector: str, before: np.ndarray, timeout_s: float = 60.0) -> float:
    """Mean absolute grey-level change of the canvas once it has redrawn (0 if it never did)."""
    deadline = time.monotonic() + timeout_s
    diff = 0.0
    while time.monotonic() < deadline:
        after = _pixels(tab, selector)
        diff = float(np.abs(after - before).mean()) if after.shape == before.shape else 255.0
        if diff > 0.5:
            return diff
        tab.wait_for_timeout(100)
    return diff


def _drawn(tab: Any, selector: str, timeout_s: float = 60.0) -> np.ndarray:
    """The canvas once it shows something (grey-level variance above 100), or as it is at the end."""
    deadline = time.monotonic() + timeout_s
    pixels = _pixels(tab, selector)
    while pixels.var() <= 100.0 and time.monotonic() < deadline:
        tab.wait_for_timeout(100)  # a frame drawn just after "ready" on a loaded software renderer
        pixels = _pixels(tab, selector)
    return pixels


def _wait_shown(tab: Any) -> None:
    # Not wait_for_function: evaluating a string is eval, which the page's CSP rightly refuses.
    done = tab.locator('#v-main[data-state="ready"], #v-main[data-state="error"]')
    done.wait_for(state="attached", timeout=240_000)
    assert done.get_attribute("data-state") == "ready", tab.locator("#v-status").inner_text()


def test_wrong_key_shows_a_clear_message(page: tuple[Any, Recorder], stack: Stack, shots: Path) -> None:
    tab, record = page
    _sign_in(tab, stack, key="not-the-key")
    message = tab.locator("#api-key-error")
    message.wait_for(state="visible")
    assert "did not accept this API key (401)" in message.inner_text()
    assert tab.locator("#app").is_hidden()
    assert tab.evaluate("sessionStorage.length") == 0  # a refused key is not kept
    tab.screenshot(path=shots / "01-wrong-key.png")
    record.assert_clean()


def test_form_shows_errors_next_to_the_fields(page: tuple[Any, Recorder], stack: Stack, shots: Path) -> None:
    tab, record = page
    _sign_in(tab, stack)
    tab.locator("#app").wait_for(state="visible")
    # The page's own check, with the API's bounds (from its OpenAPI document).
    tab.get_by_label("Subjects (n)").fill("0")
    tab.get_by_role("button", name="Submit job").click()
    assert tab.locator("#err-n").inner_text() == "n must be at least 1"
    assert tab.get_by_label("Subjects (n)").get_attribute("aria-invalid") == "true"
    # A field error that only the API knows: a model version that is not installed. The select
    # offers installed ones only, so the test adds a bad option the way a stale page could have it.
    tab.get_by_label("Subjects (n)").fill("1")
    tab.evaluate(
        "() => { const s = document.getElementById('f-model');"
        " s.add(new Option('gone-v9', 'gone-v9')); s.value = 'gone-v9'; }"
    )
    tab.get_by_role("button", name="Submit job").click()
    error = tab.locator("#err-model")
    error.filter(has_text="gone-v9").wait_for()
    assert tab.locator("#err-n").inner_text() == ""
    tab.screenshot(path=shots / "07-field-error.png")
    record.assert_clean()


def test_cancel_a_job_from_the_list(page: tuple[Any, Recorder], stack: Stack, data: Data) -> None:
    tab, record = page
    _data_ready(data)  # should a worker take a job before the cancel, it finds the data
    # Without the event stream (a gateway or proxy that refuses it) the page falls back to polling.
    tab.route("**/jobs/*/events", lambda route: route.fulfill(status=404, body="gone"))
    _sign_in(tab, stack)
    tab.locator("#app").wait_for(state="visible")
    # Before the job that is looked at: these are still queued (the workers are starting, and they
    # would take them minutes), so cancelling costs the workers nothing.
    tab.get_by_label("Subjects (n)").fill("2")
    tab.get_by_label("Trajectory", exact=True).check()
    tab.get_by_label("Trajectory steps").fill("5")
    submitted = []
    for _ in range(2):
        tab.get_by_role("button", name="Submit job").click()
        tab.locator("#submit-status").filter(has_text="accepted").wait_for()
        submitted.append(tab.locator("#job-list li").first.get_attribute("data-job"))
        tab.locator("#submit-status").evaluate("node => { node.textContent = ''; }")
    first, second = (tab.locator(f'li[data-job="{job_id}"]') for job_id in submitted)
    first.get_by_role("button", name="Cancel").click()  # the confirm dialog is accepted
    first.locator(".state.cancelled").wait_for()
    assert first.get_by_role("button", name="Cancel").is_hidden()
    status, job = stack.request("GET", f"/jobs/{submitted[0]}")
    assert (status, job["state"]) == (200, "cancelled")
    # Cancelled elsewhere (the API): the row follows with no reload, by polling.
    assert stack.request("DELETE", f"/jobs/{submitted[1]}")[0] == 200
    second.locator(".state.cancelled").wait_for(timeout=30_000)
    assert any(u.endswith("/events") for u in record.urls)  # it did try the stream first
    record.assert_clean()


def test_sign_in_submit_watch_and_view(
    page: tuple[Any, Recorder], stack: Stack, data: Data, shots: Path
) -> None:
    tab, record = page
    _data_ready(data)
    response = _sign_in(tab, stack)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    tab.locator("#app").wait_for(state="visible")
    # The key lives in sessionStorage only: not in the form, not in localStorage.
    assert tab.get_by_label("API key").input_value() == ""
    assert tab.evaluate("localStorage.length") == 0
    # Signed in, the keyboard focus is on the form's first field.
    tab.locator("#f-pathology:focus").wait_for()
    tab.screenshot(path=shots / "02-signed-in.png")

    # Submit HCM, n = 1, a trajectory of 2 severities (so the severity slider has somewhere to go),
    # with the base NOR subject's volumes (the page asks for them unless unticked).
    tab.get_by_label("Pathology").select_option("HCM")
    tab.get_by_label("Subjects (n)").fill("1")
    tab.get_by_label("Trajectory", exact=True).check()
    tab.get_by_label("Trajectory steps").fill("2")
    assert tab.get_by_label("Store the base NOR subject").is_checked()
    tab.get_by_role("button", name="Submit job").click()
    tab.locator("#submit-status").filter(has_text="accepted").wait_for()
    job_id = tab.locator("#job-list li").first.get_attribute("data-job")
    assert job_id
    row = tab.locator(f'li[data-job="{job_id}"]')
    tab.locator("#jobs-status").filter(has_text="job(s)").wait_for()  # the list knows of it at once
    row.locator(".stages progress").first.wait_for(timeout=240_000)  # a stage has reported progress
    from playwright.sync_api import expect

    expect(row).to_be_in_viewport()  # scrolled to on a laptop screen, where the list is below the form
    tab.screenshot(path=shots / "03-progress.png")
    # Live state from the job's event stream: the row reaches succeeded with no reload, its stages all
    # done; the stream was asked for with the key in its header (an EventSource could not send it).
    row.locator(".state.succeeded").wait_for(timeout=240_000)
    assert f"{stack.url}/jobs/{job_id}/events" in record.keyed
    stages = row.locator(".stages progress")
    assert stages.count() >= 4
    for i in range(stages.count()):
        bar = stages.nth(i)
        assert bar.get_attribute("value") == bar.get_attribute("max")
    tab.screenshot(path=shots / "04-succeeded.png")

    row.get_by_role("button", name="Open results").click()
    _wait_shown(tab)
    main, base = "#v-main", "#v-other"
    # Side by side by default: the base NOR subject, its own volumes as the job stored them.
    assert tab.get_by_label("Side by side").input_value() == "base"
    assert tab.locator("#v-other-caption").inner_text().startswith("Base NOR subject")
    first, first_base = _drawn(tab, main), _drawn(tab, base)
    assert first.var() > 100.0, f"the canvas looks empty (variance {first.var():.1f})"
    assert first_base.var() > 100.0, f"the base canvas looks empty (variance {first_base.var():.1f})"
    h, w = min(first.shape[0], first_base.shape[0]), min(first.shape[1], first_base.shape[1])
    assert np.abs(first[:h, :w] - first_base[:h, :w]).mean() > 0.5  # two hearts, not one drawn twice
    tab.screenshot(path=shots / "05-viewer.png", full_page=True)

    # The slice, with the keyboard on the focused canvas: the base panel follows.
    slice_before = int(tab.locator("#v-slice").input_value())
    tab.locator(main).focus()
    tab.keyboard.press("ArrowUp")
    assert tab.locator("#v-slice").input_value() == str(slice_before + 1)
    assert _changed(tab, main, first) > 0.5, "the canvas did not change with the slice"
    assert _changed(tab, base, first_base) > 0.5, "the base panel did not follow the slice"
    for canvas in (main, base):
        assert tab.locator(canvas).get_attribute("data-slice") == str(slice_before + 1)
    # ... and back from the base panel's keyboard: the synthetic panel follows it.
    moved = _pixels(tab, main)
    tab.locator(base).focus()
    tab.keyboard.press("ArrowDown")
    assert tab.locator("#v-slice").input_value() == str(slice_before)
    assert _changed(tab, main, moved) > 0.5, "the synthetic panel did not follow the base panel's slice"
    assert tab.locator(main).get_attribute("data-slice") == str(slice_before)

    # The label overlay, toggled with the keyboard, in both panels.
    shown, shown_base = _pixels(tab, main), _pixels(tab, base)
    tab.get_by_label("Show", exact=True).focus()
    tab.keyboard.press("Space")
    assert not tab.get_by_label("Show", exact=True).is_checked()
    assert _changed(tab, main, shown) > 0.5, "the canvas did not change with the overlay"
    assert _changed(tab, base, shown_base) > 0.5, "the base panel did not change with the overlay"
    tab.get_by_label("Show", exact=True).check()

    # ED -> ES switches both panels; the severity slider moves the synthetic one down the trajectory.
    ed, ed_base = _pixels(tab, main), _pixels(tab, base)
    tab.locator('#v-phases input[value="ES"]').check()
    _wait_shown(tab)
    assert "ES" in tab.locator("#v-main-caption").inner_text()
    assert tab.locator("#v-other-caption").inner_text().endswith(", ES")
    assert _changed(tab, main, ed) > 0.5, "the canvas did not change from ED to ES"
    assert _changed(tab, base, ed_base) > 0.5, "the base panel did not change from ED to ES"
    es = _pixels(tab, main)
    tab.locator("#v-severity").focus()
    tab.keyboard.press("ArrowLeft")
    _wait_shown(tab)
    assert "severity 0.50" in tab.locator("#v-main-caption").inner_text()
    assert _changed(tab, main, es) > 0.5, "the canvas did not change with the severity"
    assert tab.locator("#v-other-caption").inner_text().startswith("Base NOR subject")
    tab.screenshot(path=shots / "06-viewer-es-severity.png", full_page=True)

    # The biomarker table is the API's results, figure for figure.
    status, results = stack.request("GET", f"/jobs/{job_id}/results")
    assert status == 200
    biomarkers = results["biomarkers"]["HCM_000"]
    assert sorted(biomarkers) == ["0.50", "1.00"]
    checked = 0
    for severity, values in biomarkers.items():
        for key in ("lv_edv", "lv_esv", "lv_ef", "rv_edv", "rv_ef", "myo_mass", "max_wall_thickness"):
            cell = tab.locator(f'#biomarkers td[data-severity="{severity}"][data-key="{key}"]')
            assert float(cell.get_attribute("data-value")) == values[key]
            assert cell.inner_text() == f"{values[key]:.1f}"
            checked += 1
    assert checked == 14
    # The rule diagnosis per severity is the provenance file's; the base subject is the one it names.
    provenance = next(f for f in results["files"] if f["kind"] == "provenance")
    with urllib.request.urlopen(provenance["url"], timeout=30) as answer:
        record_json = json.loads(answer.read())
    for severity, outcome in record_json["diagnosis"].items():
        cell = tab.locator(f'#biomarkers td[data-severity="{severity}"][data-key="diagnosis"] strong')
        assert cell.inner_text() == (outcome["group"] or "no rule outcome")
    assert record_json["base_subject"] in tab.locator("#v-other-caption").inner_text()
    stored = {(f["kind"], f["phase"]) for f in results["files"] if f["kind"].startswith("base_")}
    assert stored == {(k, p) for k in ("base_image", "base_label") for p in ("ED", "ES")}

    # The worker's preview (the base subject beside each severity) loads through its signed link.
    preview = tab.locator("#preview")
    preview.wait_for()
    deadline = time.monotonic() + 120
    while preview.evaluate("img => img.naturalWidth") == 0 and time.monotonic() < deadline:
        tab.wait_for_timeout(100)
    assert preview.evaluate("img => img.naturalWidth") > 100

    # A download link for every file, exactly the signed link the API gives (same key, same path).
    links = tab.locator("#downloads a")
    assert links.count() == len(results["files"])
    hrefs = sorted(urlsplit(links.nth(i).get_attribute("href")).path for i in range(links.count()))
    assert hrefs == sorted(urlsplit(f["url"]).path for f in results["files"])

    # The volumes came through the signed links; API calls carried the key in a header only.
    assert any(".nii.gz?" in u and "signature=" in u for u in record.urls)
    assert any("/jobs" in u for u in record.keyed)
    record.assert_clean()
    for log in (stack.state / "logs").glob("*.log"):
        assert KEY not in log.read_text(encoding="utf-8", errors="replace"), log
