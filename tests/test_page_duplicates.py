"""The duplicates' review in the page of `retrieve serve` (headless Chromium, the session's
`served` app and `browser`): the search as a background job (its progress, one search for
every client, Cancel, the view that owns its groups), the keyboard (next and previous group,
keep, "not duplicates" that lasts), the plan downloaded equal to the CLI's, and applying and
undoing it where the server allows it (`served_acting`)."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from conftest import ACTING_TOKEN, WAIT_S
from test_page import IMAGES, focused, hash_of, js, loaded, open_page, press, shot, tiles

from cli.main import cli
from indexes.duplicates.find import Group, Member, Report
from indexes.duplicates.jobs import Jobs

GROUPS = 120  # in the report of many groups
PAGE = 50  # groups the page lists at a time (views/duplicates.js)


def wait(driver, condition, what: str):
    """Until ``condition(driver)``; elements replaced meanwhile (a group shown again) are
    looked for again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=[
        StaleElementReferenceException]).until(lambda d: condition(d), message=what)


def review_settings(service) -> tuple[float, str]:
    """(threshold, the address's settings) of the review: fc7 alone (the pixel check is not
    what these drawings test), the threshold the median distance of an image to its nearest
    other, which groups about half of them."""
    _, items = service.items(0, IMAGES)
    nearest = sorted(service.neighbours(i, 1).result(WAIT_S)[0][0][2] for i, _ in items)
    threshold = nearest[len(nearest) // 2]
    return threshold, f"threshold={threshold!r}&verify=0"


def post(address: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(address + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def get(address: str, path: str) -> dict:
    with urllib.request.urlopen(address + path) as answer:
        return json.load(answer)


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def cards(driver) -> list:
    return driver.find_elements("css selector", "#dup-files li.member")


def keep_buttons(driver) -> list[tuple[str, str]]:
    """(accessible name, aria-pressed) of each file's Keep button in the group shown."""
    return [(b.accessible_name, b.get_attribute("aria-pressed"))
            for b in driver.find_elements("css selector", "#dup-files button.keep")]


def many_groups(service, count: int) -> Report:
    """A report of ``count`` groups of two of the served images (more than a page of them)."""
    _, items = service.items(0, IMAGES)
    member = [Member(i, path, 1.0, 0.95, 0.1, 96, 96, 1) for i, path in items]
    return Report(str(service.store.folder), IMAGES, 1.0, "given", [
        Group("near", [member[n % IMAGES], member[(n + 1) % IMAGES]]) for n in range(count)],
        count, count)


def test_the_search_shows_its_progress_runs_once_is_cancelled_and_keeps_to_its_view(
        served, browser, monkeypatch):
    address, _, service = served
    gates, calls = [threading.Event(), threading.Event()], []

    def find(config, progress):  # a search held at a step until the test says, then many groups
        calls.append(config)
        progress("verifying", 1, 4)
        gates[len(calls) - 1].wait(WAIT_S)
        progress("verifying", 2, 4)  # a cancelled search stops here
        return many_groups(service, GROUPS)

    monkeypatch.setattr(service, "jobs", Jobs(find, service.generation))
    threshold, settings = review_settings(service)
    open_page(browser, address, f"#/duplicates?{settings}")
    stage, header = (browser.find_element("id", i) for i in ("dup-stage", "find-duplicates"))
    wait(browser, lambda d: stage.text.startswith(
        "Comparing the pixels of the pairs found: 1 of 4 pairs"), "the search's progress")
    assert js(browser, "document.getElementById('dup-progress').value") == 0.25
    assert header.text == "Finding duplicates… 25%"
    assert header.get_attribute("href").endswith(f"#/duplicates?{settings}")
    find_button, cancel = (browser.find_element("id", i) for i in ("dup-find", "dup-cancel"))
    assert not find_button.is_enabled() and cancel.is_displayed()
    again = post(address, "api/duplicates/start", {"threshold": threshold, "verify": False})
    assert again["job"]["id"] == 1 and len(calls) == 1  # a second client joins it

    cancel.click()
    wait(browser, lambda d: stage.text.startswith("Cancelling…"), "cancelling")
    gates[0].set()
    wait(browser, lambda d: stage.text.startswith("Cancelled after ") and "What it had done is "
         "kept" in stage.text and find_button.is_enabled(), "cancelled")
    find_button.click()  # a new search (what the library saved, it does not do again)
    wait(browser, lambda d: stage.text.startswith("Comparing the pixels"), "searching again")

    browser.find_element("css selector", "a.home").click()  # elsewhere while it runs
    wait(browser, lambda d: loaded(d, "#grid") == IMAGES, "the collection")
    assert header.text.startswith("Finding duplicates…")
    tiles(browser, "#grid")[5].click()
    wait(browser, lambda d: loaded(d, "#neighbours") == 10, "an image's results")
    gates[1].set()
    wait(browser, lambda d: header.text == "Find duplicates", "the search done")
    assert get(address, "api/duplicates/status")["job"]["state"] == "done" and len(calls) == 2
    assert len(tiles(browser, "#neighbours")) == 10  # the results' view is the results' only
    assert browser.find_element("id", "duplicates").get_attribute("hidden") is not None
    browser.back()
    browser.back()
    wait(browser, lambda d: text(d, "dup-group-title") == "Group 1: near-duplicates (2 files)",
         "the groups, found while the view was elsewhere")
    assert hash_of(browser) == f"#/duplicates/1?{settings}" and len(calls) == 2
    assert text(browser, "group-position") == f"Group 1 of {GROUPS}"

    js(browser, f"location.hash = '#/duplicates/{PAGE}?{settings}'")  # the first page's end
    wait(browser, lambda d: text(d, "dup-page") == f"Groups 1–{PAGE} of {GROUPS}", "page 1")
    browser.find_element("id", "dup-group-title").click()
    press(browser, "n")
    wait(browser, lambda d: text(d, "dup-page") == f"Groups {PAGE + 1}–{2 * PAGE} of {GROUPS}"
         and text(d, "group-position") == f"Group {PAGE + 1} of {GROUPS}", "the next page")
    rows = browser.find_elements("css selector", "#dup-list li")
    assert len(rows) == PAGE and rows[0].find_element("tag name", "a").get_attribute(
        "aria-current") == "true"  # never all the groups in the page


def test_reviewing_by_keyboard_not_duplicates_that_last_and_the_plan_as_the_cli_makes_it(
        served, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    address, photos, service = served
    threshold, settings = review_settings(service)
    groups = get(address, f"api/duplicates/groups?{settings}&limit=500")["groups"]
    assert len(groups) >= 2
    names = [[Path(f["path"]).name for f in g["files"]] for g in groups]
    open_page(browser, address, f"#/duplicates/1?{settings}")
    wait(browser, lambda d: text(d, "dup-group-title").startswith("Group 1: "), "group 1")
    assert len(browser.find_elements("css selector", "#dup-list li")) == len(groups)
    assert text(browser, "group-position") == f"Group 1 of {len(groups)}"
    assert text(browser, "dup-how").startswith("This server only writes the plan: apply it "
                                               "with `retrieve duplicates --apply plan.json`")
    assert not browser.find_element("id", "dup-apply").is_displayed()
    try:
        browser.find_element("id", "dup-group-title").click()
        press(browser, "n")  # the next group, its first file's Keep button focused
        wait(browser, lambda d: hash_of(d) == f"#/duplicates/2?{settings}"
             and focused(d).accessible_name == f"Keep {names[1][0]}", "group 2")
        assert text(browser, "dup-group-title") == (
            f"Group 2: {'exact copies' if groups[1]['tier'] == 'exact' else 'near-duplicates'}"
            f" ({len(names[1])} files)")
        first = cards(browser)[0].text
        assert all(w in first for w in ("96 × 96", "Modified", "Folder"))
        assert [c.find_element("class name", "verdict").text for c in cards(browser)] == [
            {"trash": "to the trash", "keep": "kept for review" if f.get("faint") else "kept"}[
                f["action"]] for f in groups[1]["files"]]
        browser.find_element("id", "dup-faint").click()  # the drawn squares are plain inside
        wait(browser, lambda d: [c.find_element("class name", "verdict").text for c in cards(d)]
             == ["kept"] + ["to the trash"] * (len(names[1]) - 1), "faint copies acted on")
        browser.find_element("id", "dup-group-title").click()  # the keys are the review's
        for key, group in (("p", 1), ("n", 2)):
            press(browser, key)
            wait(browser, lambda d: hash_of(d) == f"#/duplicates/{group}?{settings}"
                 and focused(d).accessible_name == f"Keep {names[group - 1][0]}",
                 f"group {group} again")
        for key, name in ((Keys.ARROW_RIGHT, names[1][1]), ("k", names[1][1]),
                          (Keys.ARROW_LEFT, names[1][0]), (Keys.SPACE, names[1][0])):
            press(browser, key)  # to the second file, keep it, to the first, do not keep it
            wait(browser, lambda d: focused(d).accessible_name == f"Keep {name}", name)
            if key == "k":
                wait(browser, lambda d: keep_buttons(d) == [
                    (f"Keep {n}", "true" if i < 2 else "false") for i, n in enumerate(names[1])],
                     "two files kept")
        wait(browser, lambda d: [c.find_element("class name", "verdict").text
                                 for c in cards(d)][:2] == ["to the trash", "kept"],
             "the second file kept instead of the first")
        shot(browser, "serve-duplicates.png")
        press(browser, "o")  # the full image of the file in focus, in the detail view
        wait(browser, lambda d: d.find_element("id", "detail-title").text == names[1][0]
             and "/preview" in d.find_element("id", "detail-image").get_attribute("src")
             and hash_of(d) == f"#/duplicates/2?{settings}&open={groups[1]['files'][0]['id']}",
             "the full image")
        press(browser, Keys.ESCAPE)
        wait(browser, lambda d: hash_of(d) == f"#/duplicates/2?{settings}"
             and focused(d).accessible_name == f"Keep {names[1][0]}", "back to the group")

        browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                                {"behavior": "allow", "downloadPath": str(tmp_path)})
        browser.find_element("id", "dup-download").click()
        downloaded = tmp_path / "plan.json"
        wait(browser, lambda d: downloaded.exists() and downloaded.stat().st_size, "plan.json")
        chosen = groups[1]["files"][1]["path"]
        r = CliRunner().invoke(cli, ["duplicates", "--index", str(photos.parent / "idx"),
                                     "--threshold", repr(threshold), "--no-verify", "--trash",
                                     "--act-on-faint", "--prefer", chosen,
                                     "--plan", tmp_path / "cli.json", "-q"])
        assert r.exit_code == 0, r.output
        page_plan, cli_plan = (json.loads(p.read_text())
                               for p in (downloaded, tmp_path / "cli.json"))
        assert page_plan.pop("written") and cli_plan.pop("written")
        assert page_plan == cli_plan and page_plan["prefer"] == [chosen]
        assert page_plan["act_on_faint"]

        for name in names[1][:2]:  # from the download button: the first file, then the next
            press(browser, Keys.ARROW_RIGHT)
            wait(browser, lambda d: focused(d).accessible_name == f"Keep {name}", name)
        press(browser, "d")  # the chosen file is not a duplicate after all
        wait(browser, lambda d: f"Keep {names[1][1]}" not in [n for n, _ in keep_buttons(d)],
             "the file set apart")
        browser.refresh()
        later = get(address, f"api/duplicates/groups?{settings}&limit=500")["groups"]
        assert chosen not in [f["path"] for g in later for f in g["files"]]
        shown = min(2, len(later))  # one group fewer if it had two files
        wait(browser, lambda d: text(d, "dup-group-title").startswith(f"Group {shown}: ")
             and [n for n, _ in keep_buttons(d)] == [f"Keep {Path(f['path']).name}"
                                                    for f in later[shown - 1]["files"]],
             "the decision kept after a reload")
    finally:
        post(address, "api/duplicates/forget-decision", {"paths": [groups[1]["files"][1]["path"]]})
        js(browser, "localStorage.clear()")


def test_a_plan_applied_from_the_page_says_what_is_gone_and_is_undone(served, served_acting,
                                                                     browser):
    from selenium.webdriver.support.ui import Select

    _, photos, service = served
    address, move_to = served_acting
    _, settings = review_settings(service)
    before = sorted(p.relative_to(photos) for p in photos.rglob("*.png"))
    open_page(browser, address, f"?token={ACTING_TOKEN}#/duplicates/1?{settings}")
    wait(browser, lambda d: text(d, "dup-group-title").startswith("Group 1: "), "the groups")
    try:
        Select(browser.find_element("id", "dup-action")).select_by_value("move")
        wait(browser, lambda d: d.find_element("id", "dup-move-to").get_attribute("value")
             == str(move_to) and "moved to" in d.find_element("id", "dup-files").text,
             "the server's move folder")
        browser.find_element("id", "dup-apply").click()
        wait(browser, lambda d: text(d, "dup-confirm-text").startswith("Apply this plan: "),
             "asked first")
        browser.find_element("id", "dup-confirm-yes").click()
        wait(browser, lambda d: text(d, "dup-outcome-text").startswith("Done: "), "applied")
        gone = [li.text for li in browser.find_elements("css selector", "#dup-gone li")]
        moved = sorted(p.relative_to(move_to) for p in move_to.rglob("*.png"))
        assert len(gone) == len(moved) > 0 and text(browser, "dup-outcome-text").startswith(
            f"Done: {len(moved)} files moved")
        assert all(f"was moved to {move_to}/" in line for line in gone)
        assert sorted(p.relative_to(photos) for p in photos.rglob("*.png")) == sorted(
            set(before) - set(moved))
        assert focused(browser).text == "Undo"
        press(browser, "\ue007")  # Enter: undo
        wait(browser, lambda d: text(d, "dup-outcome-text") == (
            f"Undone: {len(moved)} files put back where they were."), "undone")
        assert sorted(p.relative_to(photos) for p in photos.rglob("*.png")) == before
    finally:
        js(browser, "localStorage.clear()")
        if sorted(p.relative_to(photos) for p in photos.rglob("*.png")) != before:
            for journal in (photos.parent / "idx" / "journals").glob("*.jsonl"):
                CliRunner().invoke(cli, ["duplicates", "--undo", str(journal)])
