"""The page of `retrieve serve` in a real browser (headless Chromium through Selenium, the
session's `served` app and `browser`): addresses that survive reload, Back and Forward, the
place kept, the detail view, the keyboard alone (upload included), a 400 px window, dark
mode, messages, and /docs offline (the duplicates' review: test_page_duplicates.py). Skipped
where Chromium is not installed."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

from conftest import SERVED_MAX_UPLOAD_MB, WAIT_S

# RETRIEVE_SCREENSHOTS=DIR keeps the page's pictures (docs/serve-*.png come from there).
SHOTS = os.environ.get("RETRIEVE_SCREENSHOTS")
IMAGES = 17  # in the served collection
SCROLLED = 100  # pixels down the grid, a place to come back to


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(
        lambda d: condition(d), message=what)


def api(address: str, path: str):
    with urllib.request.urlopen(address + path.lstrip("/")) as answer:
        return json.load(answer)


def js(driver, script: str, *args):
    return driver.execute_script(f"return {script}", *args)


def tiles(driver, css: str) -> list:
    return driver.find_elements("css selector", f"{css} a.tile")


def loaded(driver, css: str) -> int:
    """How many tile images under ``css`` the browser has decoded (a broken one has width 0)."""
    return js(driver, "[...document.querySelectorAll(arguments[0] + ' a.tile img')]"
                      ".filter(i => i.complete && i.naturalWidth > 0).length", css)


def press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def hash_of(driver) -> str:
    return js(driver, "location.hash")


def focused(driver):
    return driver.switch_to.active_element


def open_page(driver, address: str, route: str = "", images: int | None = None) -> None:
    """Load the page afresh at ``route``; with ``images``, until the grid shows that many."""
    driver.get("about:blank")
    driver.get(address + route)
    if images is not None:
        wait(driver, lambda d: loaded(d, "#grid") == images, f"{images} thumbnails")


def results_shown(driver, count: int):
    wait(driver, lambda d: loaded(d, "#neighbours") == count, f"{count} results")
    return tiles(driver, "#neighbours")


def ids_of(driver, css: str) -> list[int]:
    return [int(t.get_attribute("data-id")) for t in tiles(driver, css)]


def item_id(address: str, path: Path) -> int:
    items = api(address, "api/items?limit=100")["items"]
    return next(i["id"] for i in items if i["path"] == str(path))


def test_addresses_survive_reload_back_and_forward_and_keep_the_place(served, browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    address, photos, _ = served
    open_page(browser, address, images=IMAGES)
    assert js(browser, "document.getElementById('summary').textContent") == (
        f"{IMAGES} images · {photos}")
    shot(browser, "serve-grid.png")

    browser.execute_script(f"scrollTo(0, {SCROLLED})")
    tile = next(t for t in tiles(browser, "#grid") if t.get_attribute("data-index") == "8")
    item, name = tile.get_attribute("data-id"), tile.text.split("\n")[0]
    tile.click()
    wait(browser, lambda d: hash_of(d) == f"#/similar/{item}", "the image's address")
    shown = results_shown(browser, 10)  # k others: the query beside them, not among them
    assert int(item) not in ids_of(browser, "#neighbours")
    assert browser.find_element("id", "results-title").text == f"Similar to {name}"
    assert all(re.fullmatch(r"\d+%", t.find_element("class name", "closeness").text)
               for t in shown)
    assert ids_of(browser, "#neighbours") == [
        r["id"] for r in api(address, f"api/items/{item}/neighbours?k=10")["results"]]
    shot(browser, "serve-neighbours.png")

    Select(browser.find_element("id", "k")).select_by_visible_text("5")  # asked again, in place
    wait(browser, lambda d: hash_of(d) == f"#/similar/{item}?k=5", "k in the address")
    results_shown(browser, 5)

    browser.back()  # the grid, where it was, the image left focused
    wait(browser, lambda d: hash_of(d) == "" and not d.find_element("id", "collection")
         .get_attribute("hidden"), "the collection again")
    wait(browser, lambda d: js(d, "scrollY") == SCROLLED, "the place in the grid")
    assert focused(browser).get_attribute("data-id") == item
    browser.forward()
    wait(browser, lambda d: hash_of(d) == f"#/similar/{item}?k=5", "forward again")
    results_shown(browser, 5)
    browser.refresh()
    results_shown(browser, 5)
    assert browser.find_element("id", "results-title").text == f"Similar to {name}"

    # The collection's filters are part of its address too.
    browser.find_element("id", "back").click()
    wait(browser, lambda d: hash_of(d) == "", "the collection")
    browser.find_element("id", "name").send_keys("stripes")
    wait(browser, lambda d: hash_of(d) == "#/?name=stripes", "the name in the address")
    wait(browser, lambda d: loaded(d, "#grid") == 4, "the four stripes")
    Select(browser.find_element("id", "sort")).select_by_value("newest")
    wait(browser, lambda d: hash_of(d) == "#/?name=stripes&sort=newest", "the order too")
    browser.find_element("id", "name").send_keys(Keys.BACKSPACE * len("stripes"))
    wait(browser, lambda d: hash_of(d) == "#/?sort=newest", "no name")
    circle = str(photos / "circle")
    Select(browser.find_element("id", "folder")).select_by_value(circle)
    wait(browser, lambda d: "folder=" in hash_of(d) and loaded(d, "#grid") == 5,
         "the circles and their copy below")
    browser.refresh()
    wait(browser, lambda d: loaded(d, "#grid") == 5, "the folder after a reload")
    assert browser.find_element("id", "folder").get_attribute("value") == circle
    assert browser.find_element("id", "sort").get_attribute("value") == "newest"
    assert {t.get_attribute("title").rsplit("/", 2)[-2] for t in tiles(browser, "#grid")} == {
        "circle", "copies"}


def test_the_detail_view(served, browser):
    address, photos, _ = served
    query = item_id(address, photos / "circle" / "circle-1.png")
    results = api(address, f"api/items/{query}/neighbours?k=10")["results"]
    third = results[2]
    open_page(browser, address, f"#/similar/{query}?open={third['id']}")
    dialog = browser.find_element("id", "detail")
    name = third["path"].rsplit("/", 1)[1]
    wait(browser, lambda d: dialog.is_displayed()
         and d.find_element("id", "detail-title").text == name, "the detail view")
    wait(browser, lambda d: js(d, "document.getElementById('detail-image').naturalWidth") > 0
         and "/preview" in d.find_element("id", "detail-image").get_attribute("src"),
         "the image itself")
    facts = dict(zip([t.text for t in dialog.find_elements("tag name", "dt")],
                     [t.text for t in dialog.find_elements("tag name", "dd")]))
    assert facts["Path"] == third["path"] and facts["Folder"] == third["path"].split("/")[-2]
    assert facts["Distance"].startswith(f"{third['distance']:.3f} ")  # raw, here only
    assert facts["Closeness"].startswith(f"{round(third['closer_than'] * 100)}%: closer than")
    assert browser.find_element("id", "detail-match").text.startswith(
        "Number 3 among the images most like circle-1.png")
    original = browser.find_element("id", "detail-original").get_attribute("href")
    assert original.endswith(f"/api/items/{third['id']}/image")
    with urllib.request.urlopen(original) as answer:
        assert answer.read() == Path(third["path"]).read_bytes()
    assert [browser.find_element("id", b).accessible_name for b in ("close", "previous", "next")
            ] == ["Close", "Previous image", "Next image"]
    shot(browser, "serve-detail.png")

    browser.find_element("id", "detail-copy").click()
    wait(browser, lambda d: f"Copied {name}'s path" in [
        m.text for m in d.find_elements("css selector", ".message span")], "copied")
    press(browser, "\ue014")  # the right arrow: the next result
    fourth = results[3]
    wait(browser, lambda d: hash_of(d) == f"#/similar/{query}?open={fourth['id']}"
         and d.find_element("id", "detail-title").text == fourth["path"].rsplit("/", 1)[1],
         "the next image")
    press(browser, "\ue00c")  # Escape: the results it was opened over
    wait(browser, lambda d: hash_of(d) == f"#/similar/{query}" and not dialog.is_displayed(),
         "closed")


def test_the_keyboard_alone_uploads_moves_opens_and_goes_back(served, browser):
    from selenium.webdriver.common.keys import Keys

    address, photos, _ = served
    open_page(browser, address, images=IMAGES)
    press(browser, Keys.TAB, Keys.TAB, Keys.TAB)  # past the title and "Find duplicates"
    upload = focused(browser)
    assert (upload.get_attribute("id"), upload.accessible_name) == ("file",
                                                                    "Search with an image…")
    upload.send_keys(str(photos / "stripes" / "stripes-2.png"))  # what the file chooser does
    wait(browser, lambda d: hash_of(d).startswith("#/upload/")
         and d.find_element("id", "results-title").text == "Similar to stripes-2.png",
         "the upload's results")
    assert tiles(browser, "#neighbours")[0].text.startswith("stripes-2.png")  # itself, indexed
    browser.refresh()  # the image searched with is kept in the browser
    wait(browser, lambda d: d.find_element("id", "results-title").text
         == "Similar to stripes-2.png", "the upload's results after a reload")
    results_shown(browser, 10)
    press(browser, Keys.ESCAPE)
    wait(browser, lambda d: hash_of(d) == "", "the collection")

    for _ in range(8):  # name, folder, sort, then the grid's one tab stop
        press(browser, Keys.TAB)
        if focused(browser).get_attribute("data-index") is not None:
            break
    first = focused(browser)
    assert first.get_attribute("data-index") == "0"
    assert (first.aria_role, first.accessible_name) == ("link", "circle-0.png, in circle")
    cols = js(browser, "getComputedStyle(document.getElementById('grid')).getPropertyValue("
                       "'--cols')")
    moves = [(Keys.ARROW_RIGHT, 1), (Keys.ARROW_DOWN, 1 + int(cols)), (Keys.END, IMAGES - 1),
             (Keys.HOME, 0)]
    for key, index in moves:
        press(browser, key)
        wait(browser, lambda d: focused(d).get_attribute("data-index") == str(index),
             f"tile {index}")
    press(browser, Keys.ENTER)
    item = first.get_attribute("data-id")
    wait(browser, lambda d: hash_of(d) == f"#/similar/{item}" and loaded(d, "#neighbours") == 10,
         "its results")
    for _ in range(3):  # from the heading: the number of results, Details, the first result
        press(browser, Keys.TAB)
    assert "closer than the nearest neighbour of" in focused(browser).accessible_name
    press(browser, Keys.ENTER)
    wait(browser, lambda d: "open=" in hash_of(d), "its detail")
    press(browser, Keys.ESCAPE)
    wait(browser, lambda d: hash_of(d) == f"#/similar/{item}", "the detail closed")
    press(browser, Keys.ESCAPE)
    wait(browser, lambda d: hash_of(d) == "" and focused(d).get_attribute("data-id") == item,
         "the collection, the image focused")


def test_a_400_pixel_window_and_dark_mode(served, browser):
    address, photos, _ = served
    item = item_id(address, photos / "square" / "square-3.png")
    try:
        browser.set_window_size(400, 800)
        open_page(browser, address, f"#/similar/{item}?k=20")
        results_shown(browser, IMAGES - 1)  # every other image
        assert js(browser, "document.documentElement.scrollWidth <= innerWidth")
        browser.execute_script("scrollTo(0, 600)")
        back = js(browser, "document.getElementById('back').getBoundingClientRect().toJSON()")
        bar = js(browser, "document.querySelector('#results .bar').getBoundingClientRect()"
                          ".toJSON()")
        assert back["top"] >= 0 and back["bottom"] <= bar["bottom"]  # still there, scrolled
        assert back["width"] >= 44 and back["height"] >= 44
        assert bar["height"] <= 0.1 * js(browser, "innerHeight")
        background = js(browser, "getComputedStyle(document.querySelector('#results .bar'))"
                                 ".backgroundColor")
        assert background.startswith("rgb(")  # opaque: rgba() would let the grid through
        light = js(browser, "getComputedStyle(document.body).backgroundColor")
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark"}]})
        dark = js(browser, "getComputedStyle(document.body).backgroundColor")
        text = js(browser, "getComputedStyle(document.body).color")
        assert luminance(light) > 0.8 and luminance(dark) < 0.2 and luminance(text) > 0.8
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        browser.set_window_size(1200, 800)


def luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_messages_name_the_file_say_when_the_server_is_gone_and_stay(served, browser, tmp_path):
    address, _, _ = served
    open_page(browser, address, images=IMAGES)
    (tmp_path / "notes.png").write_text("not an image")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * ((SERVED_MAX_UPLOAD_MB + 1) << 20))
    said = lambda d: [m.text for m in d.find_elements("css selector", ".message span")]  # noqa
    browser.find_element("id", "file").send_keys(str(tmp_path / "notes.png"))
    wait(browser, lambda d: said(d) == ["notes.png: not an image"], "the server's message")
    browser.find_element("id", "file").send_keys(str(big))  # checked before it is sent
    too_big = (f"big.png is {SERVED_MAX_UPLOAD_MB + 1} MB: this server takes images up to "
               f"{SERVED_MAX_UPLOAD_MB} MB (retrieve serve --max-upload-mb)")
    wait(browser, lambda d: said(d)[-1:] == [too_big], "the size, said by the page")
    browser.execute_cdp_cmd("Network.enable", {})
    try:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        tiles(browser, "#grid")[3].click()
        gone = "No answer from the server: is `retrieve serve` still running?"
        wait(browser, lambda d: said(d) == ["notes.png: not an image", too_big, gone],
             "the server gone, and the earlier messages still there")
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        browser.execute_cdp_cmd("Network.disable", {})
    browser.find_elements("css selector", ".message button")[0].click()  # dismissed
    assert said(browser) == [too_big, gone]


def test_docs_work_offline(served, browser):
    address, _, _ = served
    operations = sum(len(p) for p in api(address, "openapi.json")["paths"].values())
    open_page(browser, address, "docs")  # this machine reaches no CDN: all from the package
    wait(browser, lambda d: len(d.find_elements("css selector", ".opblock")) == operations,
         "Swagger UI's list of the API")
