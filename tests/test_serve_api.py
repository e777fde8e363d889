"""retrieve serve's API as the page uses it, on the session's served collection: /openapi.json
checked against every route's real answers and errors, browsing by folder, text and order, an
item's facts and preview, how close results are, and the 413 through a real server."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cli.app import create_app
from conftest import SERVED_MAX_UPLOAD_MB
from openapi_check import conforms


@pytest.fixture(scope="module")
def client(served):
    """A test client of an app over the served index (the same service as the live server)."""
    with TestClient(create_app(served[2], max_upload_mb=SERVED_MAX_UPLOAD_MB)) as c:
        yield c


def upload(*paths):
    return [("image", (os.path.basename(p), open(p, "rb").read(), "image/png")) for p in paths]


def ids(client) -> dict[str, int]:
    return {i["path"]: i["id"] for i in client.get("/api/items").json()["items"]}


def test_the_openapi_description_is_what_the_server_answers(served, client, tmp_path):
    _, photos, _ = served
    spec = client.get("/openapi.json").json()
    png = photos / "circle" / "circle-1.png"
    item = ids(client)[str(png)]
    (tmp_path / "notes.png").write_text("not an image")

    def chunks():  # a body without a Content-Length
        yield png.read_bytes()

    get, post = client.get, client.post
    asked = [
        ("get", "/api/info", get("/api/info")),
        ("get", "/api/limits", get("/api/limits")),
        ("get", "/api/folders", get("/api/folders")),
        ("get", "/api/items", get("/api/items", params={"folder": photos, "sort": "newest"})),
        ("get", "/api/items", get("/api/items", params={"sort": "random"})),
        ("get", "/api/items/{item}", get(f"/api/items/{item}")),
        ("get", "/api/items/{item}", get("/api/items/99999")),
        ("get", "/api/items/{item}", get("/api/items/abc")),
        ("get", "/api/items/{item}/neighbours", get(f"/api/items/{item}/neighbours")),
        ("get", "/api/items/{item}/neighbours", get("/api/items/99999/neighbours")),
        ("get", "/api/items/{item}/neighbours",
         get(f"/api/items/{item}/neighbours", params={"nprobe": 2})),  # not an IVF index
        ("post", "/api/search", post("/api/search", files=upload(png))),
        ("post", "/api/search", post("/api/search", files=upload(png, png))),
        ("post", "/api/search", post("/api/search", files=upload(tmp_path / "notes.png"))),
        ("post", "/api/search", post("/api/search", content=chunks(),
                                     headers={"content-type": "multipart/form-data"})),
        ("post", "/api/search", post("/api/search", files={"image": ("big.png", b"\0" * (
            (SERVED_MAX_UPLOAD_MB + 1) << 20))})),
        ("get", "/api/duplicates", get("/api/duplicates", params={"threshold": 1.0,
                                                                  "verify": False})),
        ("get", "/api/duplicates", get("/api/duplicates", params={"threshold": -1})),
        *duplicates_routes(client, item, ids(client)[str(photos / "square" / "square-1.png")]),
    ]
    pictures = [f"/api/items/{{item}}/{route}" for route in ("thumbnail", "preview", "image")]
    asked += [("get", p, get(p.format(item=item))) for p in pictures]
    asked += [("get", p, get(p.format(item=99999))) for p in pictures]
    png.rename(tmp_path / "away.png")  # indexed, and gone
    try:
        asked += [("get", p, get(p.format(item=item))) for p in pictures]
        asked.append(("get", "/api/items/{item}", get(f"/api/items/{item}")))
    finally:
        (tmp_path / "away.png").rename(png)

    checked = {conforms(spec, *a) for a in asked}
    assert {s for _, _, s in checked} == {200, 400, 403, 404, 410, 411, 413}
    operations = {(m, r) for r, ops in spec["paths"].items() for m in ops}
    acting = {("post", "/api/duplicates/apply"), ("post", "/api/duplicates/undo")}
    # every route answers (applying and undoing a plan: in test_dup_actions.py)...
    assert {(m, r) for m, r, s in checked if s == 200} == operations - acting
    # ...and refuses as it says, all but those with nothing to refuse (no parameter)
    assert {(m, r) for m, r, s in checked if s >= 400} == operations - {
        ("get", "/api/info"), ("get", "/api/limits"), ("get", "/api/folders"),
        ("get", "/api/duplicates/decisions"), ("get", "/api/duplicates/gone"),
        ("post", "/api/duplicates/cancel")}
    assert "422" not in json.dumps(spec["paths"])  # a bad parameter is a 400, as answered
    body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["items"] == {
        "type": "string", "format": "binary"}  # so that /docs can send a file


def duplicates_routes(client, a: int, b: int) -> list[tuple]:
    """The duplicates routes' answers and errors, as (method, route, response); decisions
    marked and forgotten again, nothing applied (this server has no --allow-actions)."""
    get, post = client.get, client.post
    route = "/api/duplicates/"
    fast = {"threshold": 1.0, "verify": False}
    return [
        ("get", route + "groups", get(route + "groups", params=fast)),
        ("get", route + "groups", get(route + "groups", params={"limit": 0})),
        ("post", route + "groups", post(route + "groups", json={**fast, "limit": 2,
                                                                "prefer": ["/nowhere"]})),
        ("post", route + "groups", post(route + "groups", json={"offset": -1})),
        ("post", route + "start", post(route + "start", json=fast)),
        ("post", route + "start", post(route + "start", json={"threshold": -1})),
        ("get", route + "status", get(route + "status", params={"after": 0})),
        ("get", route + "status", get(route + "status", params={"after": -1})),
        ("post", route + "cancel", post(route + "cancel")),
        ("post", route + "plan", post(route + "plan", json=fast)),
        ("post", route + "plan", post(route + "plan", json={**fast, "action": "move"})),
        ("post", route + "not-duplicates", post(route + "not-duplicates", json={"ids": [a, b]})),
        ("post", route + "not-duplicates", post(route + "not-duplicates", json={"ids": [a]})),
        ("post", route + "not-duplicates", post(route + "not-duplicates",
                                               json={"ids": [a, 99999]})),
        ("get", route + "decisions", get(route + "decisions")),
        ("post", route + "forget-decision", post(route + "forget-decision", json={"ids": [a, b]})),
        ("post", route + "forget-decision", post(route + "forget-decision", json={})),
        ("get", route + "gone", get(route + "gone")),
        ("post", route + "apply", post(route + "apply", json={})),
        ("post", route + "apply", post(route + "apply", json=[])),
        ("post", route + "undo", post(route + "undo", json={"journal": "plan-0"})),
        ("post", route + "undo", post(route + "undo", json={})),
    ]


def test_the_token_is_declared_and_its_401_as_described(served):
    with TestClient(create_app(served[2], token="s3cret")) as c:
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["token"] == {"type": "http",
                                                                   "scheme": "bearer"}
        assert conforms(spec, "get", "/api/info", c.get("/api/info"))[2] == 401


def test_browsing_by_folder_name_and_order(served, client):
    _, photos, _ = served
    folders = client.get("/api/folders").json()
    assert folders == {"root": str(photos), "folders": [
        {"path": str(photos / f), "images": n} for f, n in (
            ("circle", 4), ("circle/copies", 1), ("square", 4), ("stripes", 4), ("triangle", 4))]}

    def paths(**params):
        return [i["path"] for i in client.get("/api/items", params=params).json()["items"]]

    circles = [str(photos / "circle" / f"circle-{i}.png") for i in range(4)]
    assert paths(folder=photos / "circle") == circles + [
        str(photos / "circle" / "copies" / "circle-0.png")]  # its subfolders too
    assert paths(folder=photos / "circ") == []  # a folder, not the start of a name
    assert paths(name="STRIPES") == [str(photos / "stripes" / f"stripes-{i}.png")
                                     for i in range(4)]
    assert paths(name="copies") == [str(photos / "circle" / "copies" / "circle-0.png")]
    assert paths(name="-1.", folder=photos / "square") == [str(photos / "square" / "square-1.png")]
    everything = paths()
    assert everything == sorted(everything)  # by path unless told
    for order, key, reverse in (("largest", "st_size", True), ("oldest", "st_mtime_ns", False)):
        found = [getattr(os.stat(p), key) for p in paths(sort=order)]
        assert found == sorted(found, reverse=reverse)
    page = client.get("/api/items", params={"name": "i", "offset": 2, "limit": 3}).json()
    assert (page["total"], page["items"]) == (13, [  # circle*, stripes*, triangle*: 13 match
        {"id": ids(client)[p], "path": p} for p in everything[2:5]])


def test_an_item_facts_preview_and_the_page_icon(served, client):
    _, photos, _ = served
    png = photos / "square" / "square-2.png"
    item = ids(client)[str(png)]
    facts = client.get(f"/api/items/{item}").json()
    assert {k: facts[k] for k in ("id", "path", "name", "folder", "bytes", "width", "height",
                                  "media_type")} == {
        "id": item, "path": str(png), "name": "square-2.png", "folder": str(photos / "square"),
        "bytes": png.stat().st_size, "width": 96, "height": 96, "media_type": "image/png"}
    preview = client.get(f"/api/items/{item}/preview")
    with Image.open(io.BytesIO(preview.content)) as img:
        assert (img.format, img.size) == ("JPEG", (96, 96))  # never larger than the file
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_results_say_how_close_they_are(served, client):
    _, photos, _ = served
    found = client.post("/api/search", params={"k": 16}, files=upload(
        photos / "triangle" / "triangle-0.png")).json()["results"]
    shares = [r["closer_than"] for r in found]
    assert found[0]["distance"] < 1e-3  # itself, indexed
    # Closer than the nearest other image of every image but circle-0.png and its copy,
    # whose nearest other image is at distance 0 (all 17 are the sample).
    assert shares[0] == pytest.approx(15 / 17)
    assert shares == sorted(shares, reverse=True) and 0 <= shares[-1] < shares[0]


def test_an_upload_over_the_limit_gets_its_413_from_a_real_server(served):
    """A client that sends the whole body before reading (urllib) gets the 413 and its
    message, not a reset connection: the server reads the body and drops it."""
    address, _, _ = served
    big = 16 << 20  # past what the sockets' buffers take in before the server reads
    body = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
            + b"\0" * big + b"\r\n--x--\r\n")
    ask = urllib.request.Request(address + "api/search", data=body,
                                 headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(ask)
    assert refused.value.code == 413
    assert json.load(refused.value) == {
        "error": f"the upload is larger than {SERVED_MAX_UPLOAD_MB} MB (--max-upload-mb)"}


def test_docs_and_redoc_load_nothing_from_elsewhere(client):
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        sources = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)["']""", html)
        sources += re.findall(r"""(?:url|Url):\s*['"]([^'"]+)['"]""", html)  # the spec's
        assert sources and not [s for s in sources if "//" in s], (page, sources)
        for source in sources:
            assert client.get(source).status_code == 200, (page, source)


def test_the_search_runs_once_in_the_background_is_followed_and_cancelled(served, client,
                                                                         monkeypatch):
    """Starts and requests for the groups join the one search (never a second); its progress
    is told as the library reports it; Cancel stops it at its next step, answering those who
    waited with a 409, and the next start runs again; other settings wait their turn (409)."""
    import threading
    import time

    from conftest import WAIT_S
    from indexes.duplicates.jobs import Jobs

    service = served[2]
    gate, calls, starts = threading.Event(), [], []

    def find(config, progress):  # the library's search, held at a step until the test says
        calls.append(config)
        progress("verifying", 1, 4)
        gate.wait(WAIT_S)
        progress("verifying", 2, 4)  # a cancelled search stops here
        return service._find_duplicates(config, progress)

    jobs = Jobs(find, service.generation)
    start = jobs.start
    jobs.start = lambda config: starts.append(config) or start(config)  # who joined
    monkeypatch.setattr(service, "jobs", jobs)
    spec = client.get("/openapi.json").json()
    fast = {"threshold": 1.0, "verify": False}
    status = client.post("/api/duplicates/start", json=fast).json()
    while status["job"]["stage"] != "verifying":  # each change as it comes
        status = client.get("/api/duplicates/status", params={"after": status["version"]}).json()
    assert (status["job"]["state"], status["job"]["done"], status["job"]["total"]) == (
        "running", 1, 4)
    waiting = threading.Thread(target=lambda: waited.append(
        client.get("/api/duplicates/groups", params=fast)))
    waited: list = []
    waiting.start()
    deadline = time.monotonic() + WAIT_S
    while len(starts) < 2 and time.monotonic() < deadline:  # the groups' request has joined
        time.sleep(0.01)
    joined = client.post("/api/duplicates/start", json=fast).json()
    other = client.post("/api/duplicates/start", json={"threshold": 2.0, "verify": False})
    cancelling = client.post("/api/duplicates/cancel").json()["job"]
    assert joined["job"]["id"] == status["job"]["id"] and len(calls) == 1
    assert cancelling["cancelling"] and cancelling["state"] == "running"
    gate.set()
    waiting.join(WAIT_S)
    ended = client.get("/api/duplicates/status").json()["job"]
    assert ended["state"] == "cancelled" and ended["finished"] >= ended["started"]
    assert waited[0].json()["error"].startswith("the search for duplicates was cancelled")
    again = client.post("/api/duplicates/start", json=fast).json()["job"]
    page = client.get("/api/duplicates/groups", params=fast)  # waits for it
    assert again["id"] == status["job"]["id"] + 1 and page.status_code == 200 and len(calls) == 2
    checked = [conforms(spec, "post", "/api/duplicates/start", other),
               conforms(spec, "get", "/api/duplicates/groups", waited[0]),
               conforms(spec, "post", "/api/duplicates/cancel", client.post(
                   "/api/duplicates/cancel"))]
    assert [s for _, _, s in checked] == [409, 409, 200]
