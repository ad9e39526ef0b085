# SPDX-License-Identifier: Apache-2.0
"""report.html in a real browser: Debian's headless Chromium, opened from file://.

An audit (the tiny model) of a folder with unreadable files, a DICOM carrying patient data and
hostile file names; the page must show every row, run no injected script, load nothing from
outside file://, log no console error, and sort, filter, open an image and blend its overlay.
Skips with the reason where chromium, chromedriver or selenium are not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import browser_kit
import pytest

from medig.audit import read_results
from medig.cli import main
from tests.audit.conftest import TINY, make_audit_folder
from tests.io.conftest import PHI

pytestmark = pytest.mark.skipif(browser_kit.missing() is not None,
                                reason=str(browser_kit.missing()))

HOSTILE = ["<img src=x onerror=alert(1)>.png", 'a&b "q".png']
BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
        "--batch-size", "4", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    folder = make_audit_folder(tmp_path_factory.mktemp("fundus"))
    for name in HOSTILE:
        shutil.copy(folder / "b.png", folder / name)
    out = tmp_path_factory.mktemp("audit") / "out"
    main(["audit", str(folder), "--out", str(out), *BASE])
    return out


@pytest.fixture(scope="module")
def driver():
    d = browser_kit.start(1366, 768)
    yield d
    d.quit()


def _shot(driver, tmp_path: Path, name: str) -> Path:
    """A screenshot in tmp_path (and in $MEDIG_SCREENSHOTS when set, to look at)."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("MEDIG_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["MEDIG_SCREENSHOTS"]) / path.name)
    assert path.stat().st_size > 5000
    return path


def _open(driver, out: Path, tab: str = "images"):
    from selenium.webdriver.common.by import By

    driver.get((out / "report.html").as_uri())
    driver.get_log("browser"), driver.get_log("performance")  # noqa: B018 - start each page clean
    driver.get((out / "report.html").as_uri())
    if tab != "summary":
        driver.find_element(By.CSS_SELECTOR, f'#tabs button[data-tab="{tab}"]').click()


def _wait(driver, script: str, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def _visible_paths(driver) -> list[str]:
    """The rows the table displays, in order (display: none counts as not shown)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#tbody [data-path]'))"
        ".filter(function (e) { return getComputedStyle(e).display !== 'none'; })"
        ".map(function (e) { return e.dataset.path; })")


def test_acceptance_hostile_names_unreadable_files(audited, driver, tmp_path):
    from selenium.webdriver.common.by import By

    rows = read_results(audited / "results.jsonl")
    assert {r["path"] for r in rows} >= set(HOSTILE)
    assert sum(r["status"] == "error" for r in rows) == 2
    _open(driver, audited)
    _wait(driver, "return document.documentElement.dataset.rows === 'all'")
    elements = driver.find_elements(By.CSS_SELECTOR, "[data-path]")
    assert sorted(e.get_attribute("data-path") for e in elements) == sorted(r["path"] for r in rows)
    for name in HOSTILE:
        row = next(e for e in elements if e.get_attribute("data-path") == name)
        assert name in row.get_attribute("textContent")  # shown as text
    # no script ran and no element was injected from a name
    assert driver.execute_script("return window.__dialogs") == []
    assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"], "
                                 "img:not([src$=\".png\"])').length") == 0
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 2
    # the unreadable files are listed with their reasons
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="problems"]').click()
    problems = driver.find_element(By.ID, "problems").text
    for r in rows:
        if r["status"] == "error":
            assert r["path"] in problems and r["error"] in problems
    # clicking a row opens the viewer with a slider and a loaded image
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="images"]').click()
    hostile = next(e for e in driver.find_elements(By.CSS_SELECTOR, "[data-path]")
                   if e.get_attribute("data-path") == HOSTILE[0])
    hostile.click()
    assert driver.find_element(By.CSS_SELECTOR, "#viewer input[type=range]").is_displayed()
    assert _wait(driver, "var i = document.querySelector('#viewer img.photo');"
                         "return i && i.complete && i.naturalWidth")
    assert driver.find_element(By.CSS_SELECTOR, "#viewer h3").text == HOSTILE[0]
    _shot(driver, tmp_path, "viewer")
    assert browser_kit.console_errors(driver) == []
    urls = browser_kit.requested_urls(driver)
    assert any(u.endswith(".png") for u in urls)  # the overlays were requested ...
    assert all(u.startswith(("file:", "data:")) for u in urls), urls  # ... and nothing else


def test_sort_filter_slider_keys(audited, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    rows = read_results(audited / "results.jsonl")
    _open(driver, audited)
    # sort by completeness error, ascending then descending; rows without one last both ways
    header = driver.find_element(By.CSS_SELECTOR, '#thead button[data-key="relative_error"]')
    header.click()
    known = sorted((r for r in rows if r.get("relative_error") is not None),
                   key=lambda r: (r["relative_error"], r["path"]))
    got = _visible_paths(driver)
    assert [r["relative_error"] for r in known] == [
        next(r["relative_error"] for r in rows if r["path"] == p) for p in got[:len(known)]]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    got = _visible_paths(driver)
    values = [next(r["relative_error"] for r in rows if r["path"] == p) for p in got[:len(known)]]
    assert values == sorted(values, reverse=True) and len(set(got)) == len(rows)
    # text search, with the count
    search = driver.find_element(By.ID, "search")
    search.send_keys("a&b")
    assert _visible_paths(driver) == ['a&b "q".png']
    assert driver.find_element(By.ID, "count").text == f"1 of {len(rows)} images shown"
    search.clear()
    search.send_keys(Keys.ESCAPE)
    driver.execute_script("var s = document.getElementById('search'); s.value = '';"
                          "s.dispatchEvent(new Event('input'));")
    # a facet: status = error; the other facets' counts follow
    driver.find_element(By.CSS_SELECTOR, 'input[data-facet="status"][value="error"]').click()
    errors = sorted(r["path"] for r in rows if r["status"] == "error")
    assert sorted(_visible_paths(driver)) == errors
    count = driver.find_element(By.CSS_SELECTOR, 'input[data-facet="predicted"]'
                                '[value="(not explained)"] ~ .n').text
    assert count == str(len(errors))
    _shot(driver, tmp_path, "table-filtered")
    driver.find_element(By.CSS_SELECTOR, 'input[data-facet="status"][value="error"]').click()
    assert len(_visible_paths(driver)) == len(rows)
    # open the first image, blend the overlay, step with the keyboard
    first = _visible_paths(driver)[0]
    driver.find_element(By.CSS_SELECTOR, "#tbody .row").click()
    slider = driver.find_element(By.CSS_SELECTOR, "#viewer input[type=range]")
    before = float(driver.execute_script(
        "return getComputedStyle(document.querySelector('#viewer img.over')).opacity"))
    for _ in range(30):
        slider.send_keys(Keys.ARROW_LEFT)
    after = float(driver.execute_script(
        "return getComputedStyle(document.querySelector('#viewer img.over')).opacity"))
    assert after == pytest.approx(before - 0.30, abs=1e-6)
    _shot(driver, tmp_path, "viewer-blended")
    driver.find_element(By.TAG_NAME, "body").send_keys("j")
    second = driver.find_element(By.CSS_SELECTOR, "#viewer h3").text
    assert second == _visible_paths(driver)[1] != first
    driver.find_element(By.TAG_NAME, "body").send_keys("k")
    assert driver.find_element(By.CSS_SELECTOR, "#viewer h3").text == first
    # zoom in: the photograph is drawn larger than the stage
    driver.find_element(By.XPATH, "//div[@id='viewer']//button[text()='+']").click()
    assert "scale(1.5)" in driver.execute_script(
        "return document.querySelector('#viewer .pan').style.transform")
    assert browser_kit.console_errors(driver) == []


def _over(driver) -> dict:
    return driver.execute_script(
        "var i = document.querySelector('#viewer img.over');"
        "return {src: i.getAttribute('src'), done: i.complete, width: i.naturalWidth};")


def _wait_over(driver, src: str) -> None:
    _wait(driver, "var i = document.querySelector('#viewer img.over');"
                  f"return i.getAttribute('src') === {src!r} && i.complete && i.naturalWidth > 0")


def test_baseline_toggle_switches_the_overlay(audited, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    manifest = json.loads((audited / "manifest.json").read_text())
    assert manifest["settings"]["baselines"] == ["black", "blur"]  # the CLI's default
    _open(driver, audited)
    row = next(r for r in read_results(audited / "results.jsonl") if r["status"] == "ok")
    driver.execute_script("document.querySelector('#tbody [data-path=\"' + "
                          "CSS.escape(arguments[0]) + '\"]').click()", row["path"])
    buttons = driver.find_elements(By.CSS_SELECTOR, "#viewer [role=group] button")
    assert [b.text for b in buttons] == ["averaged", "black", "blur"]
    assert buttons[0].get_attribute("aria-pressed") == "true"
    averaged = _over(driver)["src"]
    _wait_over(driver, averaged)
    seen = {averaged}
    for name in ("black", "blur"):
        driver.find_element(By.CSS_SELECTOR, f'#viewer button[data-view="{name}"]').click()
        src = _over(driver)["src"]
        assert src not in seen and src.startswith(f"report_files/baselines/{name}/")
        _wait_over(driver, src)  # loaded: naturalWidth > 0
        seen.add(src)
        assert driver.find_element(By.CSS_SELECTOR, f'#viewer button[data-view="{name}"]'
                                   ).get_attribute("aria-pressed") == "true"
    _shot(driver, tmp_path, "viewer-baseline")
    # keyboard: the buttons take focus and Enter; "b" steps through the maps
    averaged_button = driver.find_element(By.CSS_SELECTOR, '#viewer button[data-view="averaged"]')
    averaged_button.send_keys(Keys.ENTER)
    assert _over(driver)["src"] == averaged
    driver.find_element(By.TAG_NAME, "body").send_keys("b")
    assert _over(driver)["src"].startswith("report_files/baselines/black/")
    # the choice is kept for the next image
    driver.find_element(By.TAG_NAME, "body").send_keys("j")
    assert _over(driver)["src"].startswith("report_files/baselines/black/")
    assert browser_kit.console_errors(driver) == []
    urls = browser_kit.requested_urls(driver)
    assert any("/report_files/baselines/blur/" in u for u in urls)
    assert all(u.startswith(("file:", "data:")) for u in urls), urls


def test_a_single_baseline_audit_shows_no_toggle(tmp_path_factory, driver):
    from selenium.webdriver.common.by import By

    folder = make_audit_folder(tmp_path_factory.mktemp("one"))
    out = tmp_path_factory.mktemp("one-audit") / "out"
    main(["audit", str(folder), "--out", str(out), *BASE, "--baseline", "black"])
    assert "baseline_overlays" not in json.loads((out / "manifest.json").read_text())
    assert not (out / "report_files").exists()
    _open(driver, out)
    driver.find_element(By.CSS_SELECTOR, "#tbody .row:not(.err)").click()
    _wait(driver, "var i = document.querySelector('#viewer img.over');"
                  "return i && i.complete && i.naturalWidth")
    assert driver.find_elements(By.CSS_SELECTOR, "#viewer [role=group], #viewer button.view") == []
    assert "averaged over the baselines" not in driver.find_element(By.ID, "viewer").text
    assert browser_kit.console_errors(driver) == []


def test_an_image_without_stored_baseline_maps_shows_no_toggle(audited, driver, tmp_path):
    """Work stored by an older medig has no per-baseline maps, so no per-baseline overlays."""
    from selenium.webdriver.common.by import By

    out = tmp_path / "copy"
    shutil.copytree(audited, out)
    first, second = [r for r in read_results(out / "results.jsonl") if r["status"] == "ok"][:2]
    old, new = first["path"], second["path"]
    for baseline in ("black", "blur"):
        (out / "report_files" / "baselines" / baseline / first["overlay"][len("overlays/"):]
         ).unlink()
    assert main(["report", str(out)]) == 0
    _open(driver, out)
    for path, toggle in ((old, False), (new, True), (old, False)):
        driver.execute_script("document.querySelector('#tbody [data-path=\"' + "
                              "CSS.escape(arguments[0]) + '\"]').click()", path)
        assert bool(driver.find_elements(By.CSS_SELECTOR, "#viewer [role=group]")) is toggle
        _wait(driver, "var i = document.querySelector('#viewer img.over');"
                      "return i && i.complete && i.naturalWidth")
    assert "per-baseline maps were not stored" in driver.find_element(By.ID, "viewer").text
    assert browser_kit.console_errors(driver) == []


def test_cover_and_charts_render(audited, driver, tmp_path):
    from selenium.webdriver.common.by import By

    _open(driver, audited, tab="summary")
    summary = driver.find_element(By.ID, "summary").text
    assert "Can the attributions be trusted?" in summary and "Completeness" in summary
    assert driver.find_elements(By.CSS_SELECTOR, "#summary svg.chart")
    _shot(driver, tmp_path, "cover")
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="charts"]').click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#charts svg.chart")) >= 3
    assert driver.find_element(By.CSS_SELECTOR, "#charts table.xtab").is_displayed()
    _shot(driver, tmp_path, "charts")
    assert browser_kit.console_errors(driver) == []


def test_medig_report_rebuilds_the_same_bytes(audited, capsys):
    before = (audited / "report.html").read_bytes()
    (audited / "report.html").unlink()
    assert main(["report", str(audited)]) == 0
    assert "browser:" in capsys.readouterr().out
    assert (audited / "report.html").read_bytes() == before


def test_no_patient_identifier_in_the_page_or_its_images(audited):
    phi_strings = [str(v) for v in PHI.values()] + [str(v).replace("^", " ") for v in PHI.values()]
    page = (audited / "report.html").read_bytes()
    files = [page] + [p.read_bytes() for p in (audited / "overlays").rglob("*.png")]
    assert b"e.dcm" in page  # the DICOM input is in the page ...
    for value in phi_strings:
        for data in files:
            assert value.encode() not in data, value  # ... its patient data is not
