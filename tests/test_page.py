"""The page of `retrieve serve` in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) sees the thumbnails, clicks one and sees its neighbours,
uploads a file and sees its results. Skipped where Chromium is not installed."""

from __future__ import annotations

import os
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from cli.app import create_app
from cli.main import cli
from cli.serve import bind
from conftest import drawn_folder, tiny_checkpoint
from indexes.service import IndexService
from retrieval.config import ExtractConfig
from retrieval.features import FeatureExtractor

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver")
# RETRIEVE_SCREENSHOTS=DIR keeps the page's pictures (the README's come from there).
SHOTS = os.environ.get("RETRIEVE_SCREENSHOTS")
WAIT_S = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server on a free port over 16 indexed drawings: (its address, the photo folder)."""
    from click.testing import CliRunner
    import uvicorn

    root = tmp_path_factory.mktemp("page")
    photos = drawn_folder(root / "photos", 4, lambda cls, i: f"{cls}-{i}.png")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    built = CliRunner().invoke(cli, ["build-index", str(photos), "--weights", str(ckpt),
                                     "--index", str(root / "idx"), "--workers", "0", "-q"])
    assert built.exit_code == 0, built.output
    service = IndexService(root / "idx", partial(FeatureExtractor.load,
                                                 config=ExtractConfig(1, 0, "cpu")))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/", photos
    server.should_exit = True
    thread.join(timeout=WAIT_S)
    service.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=what)


def loaded_images(driver, css: str) -> int:
    """How many images under ``css`` the browser has decoded (a broken one has width 0)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".filter(i => i.complete && i.naturalWidth > 0).length", css)


def test_browse_click_and_search_with_a_file(site, browser):
    from selenium.webdriver.common.by import By

    address, photos = site
    browser.get(address)
    wait(browser, lambda d: loaded_images(d, "#grid img") == 16, "16 thumbnails")
    assert browser.find_element(By.ID, "summary").text.startswith("16 images · fc7, 256 dim")
    shot(browser, "serve-grid.png")

    first = browser.find_elements(By.CSS_SELECTOR, "#grid figure")[0]
    name = first.find_element(By.TAG_NAME, "figcaption").text
    first.click()
    wait(browser, lambda d: loaded_images(d, "#neighbours img") == 11, "query and neighbours")
    assert browser.find_element(By.ID, "results-title").text == f"Nearest images to {name}"
    tiles = browser.find_elements(By.CSS_SELECTOR, "#neighbours figure")
    nearest = tiles[1].find_element(By.TAG_NAME, "figcaption").text
    assert nearest.startswith("0.000") and nearest.endswith(name)  # itself, at distance 0
    distances = [float(t.find_element(By.CLASS_NAME, "distance").text) for t in tiles[1:]]
    assert distances == sorted(distances)
    shot(browser, "serve-neighbours.png")

    upload = photos / "stripes" / "stripes-2.png"
    browser.find_element(By.ID, "file").send_keys(str(upload))
    wait(browser, lambda d: d.find_element(By.ID, "results-title").text
         == "Nearest images to stripes-2.png", "the upload's results")
    wait(browser, lambda d: loaded_images(d, "#neighbours img") == 11, "the upload's neighbours")
    nearest = browser.find_elements(By.CSS_SELECTOR, "#neighbours figure")[1].text
    assert nearest.startswith("0.000") and nearest.endswith("stripes-2.png")


def test_a_file_that_is_not_an_image_is_reported_on_the_page(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    address, _ = site
    browser.get(address)
    (tmp_path / "notes.png").write_text("not an image")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.png"))
    toast = browser.find_element(By.ID, "toast")
    wait(browser, lambda d: toast.is_displayed(), "the error")
    assert toast.text == "notes.png: not an image"


def test_the_duplicates_button_shows_the_groups(site, browser):
    from selenium.webdriver.common.by import By

    address, _ = site
    browser.get(address)
    wait(browser, lambda d: loaded_images(d, "#grid img") == 16, "16 thumbnails")
    browser.find_element(By.ID, "duplicates").click()
    import json
    import urllib.request

    title = browser.find_element(By.ID, "results-title")
    wait(browser, lambda d: not title.text.startswith("Looking"), "the duplicates' answer")
    with urllib.request.urlopen(address + "api/duplicates") as answer:
        groups = json.load(answer)["groups"]  # drawings of one shape look alike to the pixels
    assert groups and title.text.startswith(f"{len(groups)} groups of duplicates")
    shown = browser.find_elements(By.CSS_SELECTOR, "#neighbours figure")
    assert len(shown) == sum(len(g["members"]) for g in groups)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#neighbours figure.query")) == len(groups)
