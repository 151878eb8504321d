"""Headless Chromium for the browser tests (the system's chromium + chromedriver, driven by selenium)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Skip a test module when Chromium is not installed (``.ci/run`` installs it).
requires_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed (see .ci/run)"
)


def headless_chromium(window: str, *flags: str) -> Any:
    """A selenium driver of headless Chromium with a ``window`` size ("800,600") and extra flags."""
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={window}", *flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
