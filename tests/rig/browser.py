"""Headless Debian chromium driven by Selenium (chromium-driver), for the web console's tests.

Why the Debian browser: it installs with apt like the other test peers and needs nothing from
the internet at run time (Selenium Manager is never asked to download a driver: the service is
given /usr/bin/chromedriver). Screenshots go to `tests/artifacts/<test name>/` (gitignored),
kept after the run so a failure can be looked at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.rig.proc import RigError

ARTIFACTS = Path(__file__).parents[1] / "artifacts"


@contextmanager
def chromium(window: tuple[int, int] = (1280, 1000)) -> Iterator[object]:
    """A started headless chromium WebDriver; quit on exit whatever happened."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        raise RigError("chromium / chromedriver not found: apt-get install chromium chromium-driver (see Makefile)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--no-first-run",
                f"--window-size={window[0]},{window[1]}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def artifact_dir(test_name: str) -> Path:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
