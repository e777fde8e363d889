"""retrieve serve: every endpoint and error through FastAPI's test client, the answers equal
to `retrieve query --json`, path traversal, the token, batching, and a build committing while
the server runs."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
from functools import partial

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from cli import serve as serve_command
from cli.app import create_app
from cli.previews import THUMBNAIL
from cli.main import cli
from conftest import SMALL, draw_shape, drawn_folder, tiny_checkpoint
from indexes.search.service import IndexService
from retrieval.config import ExtractConfig
from retrieval.features import FeatureExtractor

FAST = ["--workers", "0", "--quiet"]
LOAD = partial(FeatureExtractor.load, config=ExtractConfig(1, 0, "cpu"))


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """12 photos (one a PNG named .jpg) indexed with a tiny network: (photos, index, ckpt)."""
    root = tmp_path_factory.mktemp("serve")
    photos = drawn_folder(root / "photos", 3)
    (photos / "square" / "2.png").rename(photos / "square" / "2.jpg")  # a PNG named .jpg
    ckpt = tiny_checkpoint(root / "tiny.pt")
    run("build-index", photos, "--weights", ckpt, "--index", root / "idx", *FAST)
    return photos, root / "idx", ckpt


@pytest.fixture
def index(built, tmp_path):
    photos, idx, _ = built
    shutil.copytree(idx, tmp_path / "idx")
    return photos, tmp_path / "idx"


@pytest.fixture
def client(index):
    service = IndexService(index[1], LOAD)
    with TestClient(create_app(service, max_upload_mb=1)) as c:
        yield c
    service.close()


def upload(*paths):
    return [("image", (os.path.basename(p), open(p, "rb").read(), "image/png")) for p in paths]


def same_results(api, cli):
    """An API result list against `query --json`'s (which has no ids): the same ranks and
    paths, and distances equal to float32 rounding (a batch of one and of two images)."""
    assert [(r["rank"], r["path"]) for r in api] == [(r["rank"], r["path"]) for r in cli]
    assert [r["distance"] for r in api] == pytest.approx([r["distance"] for r in cli], abs=1e-4)
    return True


def test_info_is_what_retrieve_info_json_prints(client, index):
    _, idx = index
    assert client.get("/api/info").json() == json.loads(run("info", "--index", idx, "--json"))


def test_items_are_paged_in_id_order(client, index):
    photos, _ = index
    first = client.get("/api/items", params={"limit": 5}).json()
    rest = client.get("/api/items", params={"offset": 5, "limit": 100}).json()
    assert (first["total"], len(first["items"]), len(rest["items"])) == (12, 5, 7)
    items = first["items"] + rest["items"]
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)
    assert sorted(i["path"] for i in items) == sorted(str(p) for p in photos.rglob("*.*"))


def test_search_and_neighbours_equal_retrieve_query(client, index):
    photos, idx = index
    a, b = photos / "circle" / "1.png", photos / "square" / "2.jpg"
    want = json.loads(run("query", a, b, "--index", idx, "-k", 5, "--json"))["queries"]
    one = client.post("/api/search", params={"k": 5}, files=upload(a)).json()
    assert one["k"] == 5 and same_results(one["results"], want[0]["results"])
    two = client.post("/api/search", params={"k": 5}, files=upload(a, b)).json()
    assert [q["query"] for q in two["queries"]] == ["1.png", "2.jpg"]
    assert all(same_results(q["results"], w["results"]) for q, w in zip(two["queries"], want))
    item = one["results"][0]["id"]  # the image itself, at distance ~0
    by_id = client.get(f"/api/items/{item}/neighbours", params={"k": 4}).json()
    assert by_id["id"] == item and item not in [r["id"] for r in by_id["results"]]
    assert same_results(by_id["results"], others(want[0]["results"]))  # k others, not itself


def others(results):
    """`query --json`'s results for an indexed image without the image itself, ranked anew."""
    return [dict(r, rank=r["rank"] - 1) for r in results[1:]]


def test_thumbnails_and_originals_are_served_by_id(client, index):
    photos, _ = index
    items = {i["path"]: i["id"] for i in client.get("/api/items").json()["items"]}
    png_as_jpg = photos / "square" / "2.jpg"
    thumb = client.get(f"/api/items/{items[str(png_as_jpg)]}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as img:
        assert img.format == "JPEG" and max(img.size) <= THUMBNAIL
    original = client.get(f"/api/items/{items[str(png_as_jpg)]}/image")
    assert original.headers["content-type"] == "image/png"  # by content, not by name
    assert original.content == png_as_jpg.read_bytes()


@pytest.mark.parametrize("path", [
    "/api/items/..%2F..%2Fetc%2Fpasswd/image",  # encoded slashes
    "/api/items/%2e%2e/image",  # encoded dots
    "/api/items/%2Fetc%2Fpasswd/thumbnail",  # an absolute path
    "/api/items//etc/passwd/image",
    "/api/items/..%5C..%5Cetc/image",  # backslashes
    "/api/items/1.5/image",
    "/api/items/-1/image",
    "/api/items/0x1/image",
    "/api/items/99999999999999999999999/neighbours",
    "/static/..%2F..%2Findexes%2Fstore.py",
    "/static/%2e%2e/app.py",
    "/../cli/app.py",
])
def test_no_client_path_reaches_the_file_system(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404), path  # not a number, or no such route
    assert set(response.json()) == {"error"} and "\n" not in response.json()["error"]


def test_ids_that_are_not_numbers_or_not_indexed(client):
    assert client.get("/api/items/abc/image").json() == {
        "error": "item: Input should be a valid integer, unable to parse string as an integer"}
    unknown = client.get("/api/items/99999/image")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no image with id 99999 "
                                                                    "in the index"})
    assert client.get("/api/nothing").status_code == 404


def test_bad_input_is_a_one_line_error_with_its_status(client, index, tmp_path):
    photos, _ = index
    (tmp_path / "notes.png").write_text("not an image")
    cases = [
        (client.post("/api/search", files=upload(tmp_path / "notes.png")), 400,
         "notes.png: not an image"),
        (client.post("/api/search", files={"other": ("a.png", b"x")}), 400,
         "no image: send it as the multipart field 'image'"),
        (client.post("/api/search", params={"k": 0}, files=upload(photos / "circle" / "0.png")),
         400, "k: Input should be greater than or equal to 1"),
        (client.get("/api/items/3/neighbours", params={"nprobe": 2}), 400,
         "--nprobe applies only to IVF indexes (built with --factory IVF...)"),
        (client.get("/api/items", params={"limit": "many"}), 400,
         "limit: Input should be a valid integer, unable to parse string as an integer"),
        (client.post("/api/search", files={"image": ("big.png", b"\0" * (2 << 20))}), 413,
         "the upload is larger than 1 MB (--max-upload-mb)"),
    ]
    for response, status, message in cases:
        assert (response.status_code, response.json()) == (status, {"error": message})


def test_a_decompression_bomb_upload_is_refused(client):
    from hostile import bomb_png

    response = client.post("/api/search", files={"image": ("bomb.png", bomb_png())})
    assert response.status_code == 400
    assert response.json()["error"].startswith("bomb.png: refused: too many pixels")


def test_the_token_guards_every_api_route(index):
    service = IndexService(index[1], LOAD)
    try:
        with TestClient(create_app(service, token="s3cret")) as c:
            for path in ("/api/info", "/api/items", "/api/items/0/thumbnail"):
                assert c.get(path).status_code == 401
                assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
                assert c.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
                assert c.get(path, params={"token": "s3cret"}).status_code == 200
            assert c.get("/api/info").json() == {
                "error": "a valid token is needed (Authorization: Bearer TOKEN)"}
            assert c.get("/").status_code == 200  # the page holds no data
    finally:
        service.close()


def test_queries_that_arrive_together_share_one_batch(index):
    photos, _ = index
    service = IndexService(index[1], LOAD, wait_s=0.2)  # wide open, so that all of them join
    files = sorted(photos.rglob("*.*"))[:8]
    try:
        with TestClient(create_app(service)) as c:
            answers = [None] * len(files)

            def ask(n):
                answers[n] = c.post("/api/search", params={"k": 1}, files=upload(files[n]))

            threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(files))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert [a.json()["results"][0]["path"] for a in answers] == [str(f) for f in files]
        assert service.batches < len(files)
    finally:
        service.close()


def test_a_build_committing_while_serving_is_picked_up(client, index, built):
    photos, idx = index
    _, _, ckpt = built
    before = client.get("/api/info").json()
    new, removed = photos / "new.png", photos / "circle" / "0.png"
    kept, stamp = removed.read_bytes(), removed.stat()
    draw_shape(1, size=SMALL, seed=123).save(new)
    removed.unlink()
    try:
        run("build-index", photos, "--weights", ckpt, "--index", idx, *FAST)
    finally:  # the photos as the other tests of this module know them
        removed.write_bytes(kept)
        os.utime(removed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    after = client.get("/api/info").json()
    assert (before["generation"], after["generation"], after["count"]) == (1, 2, 12)
    found = client.post("/api/search", params={"k": 1}, files=upload(new)).json()["results"]
    assert found[0]["path"] == str(new)
    paths = [i["path"] for i in client.get("/api/items").json()["items"]]
    assert str(new) in paths and str(photos / "circle" / "0.png") not in paths
    gone = client.get(f"/api/items/{before['count'] - 12}/neighbours")  # id 0 left the index
    assert gone.status_code == 404
    new.unlink()


def test_serve_warns_when_open_to_the_network_without_a_token(index, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    result = CliRunner().invoke(cli, ["serve", "--index", str(index[1]), "--host", "0.0.0.0",
                                      "--port", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: serving on 0.0.0.0 without --token")
    assert lines[1].startswith(f"Serving 12 images of {index[1]} at http://0.0.0.0:")
    assert lines[-1] == "Stopped."
    assert serve_command.is_loopback("127.0.0.1") and serve_command.is_loopback("::1")
    assert not serve_command.is_loopback("0.0.0.0")


def test_a_linked_image_is_served_as_indexed_and_nothing_else(built, tmp_path):
    _, _, ckpt = built
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    photos.mkdir()
    outside.mkdir()
    draw_shape(0, seed=1).save(photos / "real.png")
    draw_shape(2, seed=2).save(outside / "target.png")
    (outside / "secret.txt").write_text("not for clients")
    (photos / "link.png").symlink_to(outside / "target.png")
    run("build-index", photos, "--weights", ckpt, "--index", tmp_path / "idx", *FAST)
    service = IndexService(tmp_path / "idx", LOAD)
    try:
        with TestClient(create_app(service)) as c:
            items = {i["path"]: i["id"] for i in c.get("/api/items").json()["items"]}
            assert sorted(items) == [str(photos / "link.png"), str(photos / "real.png")]
            served = c.get(f"/api/items/{items[str(photos / 'link.png')]}/image").content
            assert served == (outside / "target.png").read_bytes()
    finally:
        service.close()


def test_neighbours_of_an_item_in_a_compressed_index_embed_its_file_again(built, tmp_path):
    photos, _, ckpt = built
    idx = tmp_path / "ivf"
    run("build-index", photos, "--weights", ckpt, "--index", idx, "--factory", "IVF2,Flat", *FAST)
    service = IndexService(idx, LOAD)
    try:
        with TestClient(create_app(service)) as c:
            item = c.get("/api/items").json()["items"][4]
            got = c.get(f"/api/items/{item['id']}/neighbours", params={"k": 3}).json()
        want = json.loads(run("query", item["path"], "--index", idx, "-k", 4, "--json"))
        assert want["queries"][0]["results"][0]["path"] == item["path"]
        assert same_results(got["results"], others(want["queries"][0]["results"]))
    finally:
        service.close()

