# SPDX-License-Identifier: Apache-2.0
"""Debian's chromium and chromedriver, driven by selenium, for the cohort browser's tests and bench.

:func:`start` returns ``None`` with the reason when the browser or selenium is not installed.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "chromium")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
# Set before any page script runs: calls to alert/confirm/prompt are recorded, not shown.
RECORD_DIALOGS = ("window.__dialogs = [];"
                  "['alert', 'confirm', 'prompt'].forEach(function (n) {"
                  " window[n] = function (m) { window.__dialogs.push(n + ':' + m); }; });")


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


def missing() -> str | None:
    """Why the browser cannot be started here, or ``None``."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    if _find(CHROMIUM) is None or _find(DRIVER) is None:
        return "chromium / chromedriver not installed (apt-get install chromium chromium-driver)"
    return None


def start(width: int = 1366, height: int = 768) -> Any:
    """A headless Chromium with a fresh empty profile, its viewport ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='medig-chromium-')}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.binary_location = _find(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(_find(DRIVER)), options=opts)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1,
                            "mobile": False})
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_DIALOGS})
    return driver


def console_errors(driver: Any) -> list[str]:
    """Console messages at level SEVERE (errors, policy violations, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for: the network log and the resource timing entries."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    urls += driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    return urls
