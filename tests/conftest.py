"""Shared fixtures: seeded tiny models, checkpoints and generated image folders.

Tests of behaviour use a network 1/16 the paper's width (0.2M parameters, 256-d fc7, a
1 MB checkpoint); only the tests of the architecture itself build the 60M-parameter one.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager

# One OpenMP thread per test process (torch's and FAISS's), set before either is imported:
# the suite's tensors are tiny, and a second thread per process only waits at barriers, which
# with two processes (pytest-xdist) or any other load on 2 cores burns CPU instead of saving
# time (a trained-network test: 2 CPU-s alone, 22 with two threads on a loaded machine).
# Subprocesses inherit it; a value set outside wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from PIL import Image, ImageDraw

# torch and the model are imported where they are used, not here: pytest-xdist's controller
# loads this file too, and its 3.7 s of torch and torchvision imports would come before any
# worker starts.

SMALL = 64  # image size for fast tests: pool5 is 1x1, brought to 6x6 by adaptive pooling
# A quick network for tests of behaviour. Kaiming initialisation: at this width the paper's
# N(0, 0.01) weights leave fc7 nearly the same for every image.
TINY = dict(width=1 / 16, init="kaiming")
TINY_DIM = 256  # its fc7 units
CLASSES = ["circle", "square", "triangle", "stripes"]


def tiny_model(num_classes: int = 4, **config):
    """A randomly initialised tiny AlexNet (retrieval.model.AlexNet)."""
    from retrieval.model import AlexNet, ModelConfig

    return AlexNet(ModelConfig(num_classes=num_classes, **{**TINY, **config}))


def tiny_checkpoint(path, classes=CLASSES, **config):
    """A randomly initialised tiny AlexNet saved as a checkpoint at image size 64."""
    from retrieval.transforms import Preprocess
    from retrieval.weights import save_checkpoint

    save_checkpoint(path, tiny_model(len(classes), **config), Preprocess(image_size=SMALL),
                    list(classes))
    return path


def same_results(found: dict, expected: dict) -> bool:
    """Two `retrieve query --json` documents give the same neighbours in the same order, at
    distances equal within float tolerance (two runtimes, or two batchings, sum in different
    orders: 4.50475 rounds either way at 4 places)."""
    def paths(doc):
        return [(q["query"], [r["path"] for r in q["results"]]) for q in doc["queries"]]

    def distances(doc):
        return [r["distance"] for q in doc["queries"] for r in q["results"]]

    assert paths(found) == paths(expected)
    assert distances(found) == pytest.approx(distances(expected), abs=1e-4)
    return True


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


def draw_shape(kind: int, size: int = 96, seed: int = 0) -> Image.Image:
    """A simple labelled picture: class 0 circle, 1 square, 2 triangle, 3 stripes."""
    rng = np.random.default_rng(seed)
    bg = tuple(int(v) for v in rng.integers(0, 80, 3))
    fg = tuple(int(v) for v in rng.integers(150, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    c, r = size / 2 + rng.uniform(-8, 8), size * rng.uniform(0.25, 0.4)
    if kind == 0:
        d.ellipse([c - r, c - r, c + r, c + r], fill=fg)
    elif kind == 1:
        d.rectangle([c - r, c - r, c + r, c + r], fill=fg)
    elif kind == 2:
        d.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], fill=fg)
    else:
        for x in range(0, size, 12):
            d.rectangle([x, 0, x + 5, size], fill=fg)
    return img


def drawn_folder(root, per_class: int, name=lambda cls, i: f"{i}.png"):
    """root/<class>/<name(class, i)>: ``per_class`` drawings of each of the 4 CLASSES."""
    for kind, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            draw_shape(kind, seed=10 * kind + i).save(root / cls / name(cls, i))
    return root


@pytest.fixture
def image_folder(tmp_path):
    """photos/<class>/<n>.jpg|png: 4 classes x 3 images, plus the list of their paths."""
    root = tmp_path / "photos"
    paths = []
    for kind, name in enumerate(["circle", "square", "triangle", "stripes"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            p = root / name / f"{i}.{'jpg' if i % 2 == 0 else 'png'}"
            draw_shape(kind, seed=10 * kind + i).save(p)
            paths.append(p)
    return root, paths


@pytest.fixture
def small_checkpoint(tmp_path):
    """A randomly initialised tiny AlexNet saved as a checkpoint at image size 64."""
    return tiny_checkpoint(tmp_path / "small.pt")


def write_malicious_checkpoint(path, marker) -> None:
    """A checkpoint whose unpickling would create ``marker``: code that must never run."""

    import torch

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": "retrieve-checkpoint", "evil": Exploit()}, path, pickle_module=pickle)


# -- `retrieve serve` and a browser, once per session (tests/test_page.py, tests/test_serve.py)
SERVED_MAX_UPLOAD_MB = 1
WAIT_S = 30  # the most a test waits for a server or a page


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """`retrieve serve --max-upload-mb 1` on a free port (uvicorn in a thread) over 17 drawn
    images: photos/<class>/<class>-<n>.png, 4 of each of the 4 CLASSES, and an exact copy of
    circle-0.png in photos/circle/copies/. Yields (address, photos folder, the IndexService)."""
    from functools import partial
    from shutil import copyfile

    from click.testing import CliRunner

    from cli.app import create_app
    from cli.main import cli
    from indexes.search.service import IndexService
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    import torch

    torch.manual_seed(0)  # session fixtures run before the autouse seeding of each test
    root = tmp_path_factory.mktemp("served")
    photos = drawn_folder(root / "photos", 4, lambda cls, i: f"{cls}-{i}.png")
    (photos / "circle" / "copies").mkdir()
    copyfile(photos / "circle" / "circle-0.png", photos / "circle" / "copies" / "circle-0.png")
    ckpt = tiny_checkpoint(root / "tiny.pt")
    built = CliRunner().invoke(cli, ["build-index", str(photos), "--weights", str(ckpt),
                                     "--index", str(root / "idx"), "--workers", "0", "-q"])
    assert built.exit_code == 0, built.output
    service = IndexService(root / "idx", partial(FeatureExtractor.load,
                                                 config=ExtractConfig(1, 0, "cpu")))
    assert service.measured.wait(WAIT_S)  # results say how close they are from the first
    with serving(create_app(service, max_upload_mb=SERVED_MAX_UPLOAD_MB)) as address:
        yield address, photos, service
    service.close()


@contextmanager
def serving(app):
    """``app`` served by uvicorn in a thread on a free port: its address."""
    import threading
    import time

    import uvicorn

    from cli.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_S)


ACTING_TOKEN = "s3cret"


@pytest.fixture(scope="session")
def served_acting(served, tmp_path_factory):
    """The served index behind a second server that may act on its duplicates, as `retrieve
    serve --allow-actions --token ACTING_TOKEN --move-to DIR`: (its address, DIR)."""
    from cli.app import create_app

    move_to = tmp_path_factory.mktemp("moved")
    app = create_app(served[2], token=ACTING_TOKEN, allow_actions=True, move_to=str(move_to))
    with serving(app) as address:
        yield address, move_to


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium through Selenium (Debian's chromium and chromium-driver); skips the
    test where they are not installed."""
    import os
    import shutil

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("needs Debian's chromium and chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,800",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def preloaded(tmp_path_factory):
    """Fresh processes without a fresh interpreter's imports: forks of one process that has
    imported torch, torchvision, FAISS and the command line (tests/preloaded.py)."""
    from preloaded import Preloaded

    server = Preloaded(tmp_path_factory.mktemp("preloaded"))
    yield server
    server.close()


# -- pytest-xdist (the README's `pytest -n auto`): which worker takes what, in which order

MAX_AUTO_WORKERS = 4  # each worker imports torch and FAISS and makes its session's fixtures


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: unknown without it
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a worker per core, at most MAX_AUTO_WORKERS."""
    return min(os.cpu_count() or 1, MAX_AUTO_WORKERS)


# Modules that share a session fixture costly to make go to one worker together (each worker
# would make its own): the served index and the browser (1 to 2 s, and a Chromium per worker),
# and the preloaded process (4 s of imports).
SAME_WORKER = {
    "tests/test_page_duplicates.py": "tests/test_page.py",
    "tests/test_serve_api.py": "tests/test_page.py",
    "tests/test_faults.py": "tests/test_distributed_build.py",
    "tests/test_cli_imports.py": "tests/test_distributed_build.py",
}


def _unit(nodeid: str) -> str:
    """The work unit of a test under ``--dist loadfile``: its module, or the module it shares
    a worker with."""
    module = nodeid.split("::", 1)[0]
    return SAME_WORKER.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (pyproject's), with the modules of SAME_WORKER in one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Units (modules, or those of SAME_WORKER together) with a test marked ``slow`` first,
    then the units with more tests: with ``--dist loadfile`` each unit goes whole to one worker
    (its module-scoped fixtures made once) in this order, so that a long one does not start
    last and run alone (the three torchrun tests, 25 s then, did at the end of the suite when
    ordered by their number)."""
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(_unit(item.nodeid), []).append(item)
    order = sorted(units.values(), key=lambda tests: (
        not any(t.get_closest_marker("slow") for t in tests), -len(tests)))
    items[:] = [item for tests in order for item in tests]


def pytest_unconfigure(config):
    """End without Python's final collections over torch's objects, as `retrieve` does
    (cli/main.py): a worker's exit 1.2 -> 0.3 s."""
    import gc

    gc.freeze()
