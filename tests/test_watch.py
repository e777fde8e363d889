"""Collections that change: --exclude and .retrieveignore kept by re-runs, and build-index
--watch following files created, changed and removed, killed and restarted."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import draw_shape, drawn_folder, tiny_checkpoint
from watch_worker import BytesExtractor

from cli.main import cli
from indexes.build.incremental import build_index
from indexes.build.watch import watch_index
from indexes.config import BuildConfig
from indexes.store.files import BuildLock
from indexes.store.store import open_for_reading
from retrieval.errors import RetrieveError
from retrieval.walk import Selection, Walked, find_images

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--workers", "0", "--quiet"]
QUIET_MS = 100  # the tests' bursts of changes: one write each
WAIT = 60  # seconds at most for a build to follow a change (it takes well under one)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def indexed(idx) -> set[str]:
    store = open_for_reading(idx)
    try:
        return {os.fsdecode(p) for p in store.items()}
    finally:
        store.close()


def test_excluded_patterns_and_retrieveignore_are_left_out_and_kept_by_re_runs(checkpoint,
                                                                               tmp_path):
    photos = drawn_folder(tmp_path / "photos", 2)  # circle/ square/ triangle/ stripes/, 0-1.png
    (photos / "circle" / ".retrieveignore").write_text("# drafts\n1.png\n")
    draw_shape(0, seed=50).save(photos / "circle" / "1.gif")
    walked = Walked()
    found = set(find_images([photos], selection=Selection(("square/", "*.gif",
                                                           str(photos / "stripes" / "0.png"))),
                            walked=walked))
    assert found == {photos / "circle" / "0.png", photos / "triangle" / "0.png",
                     photos / "triangle" / "1.png", photos / "stripes" / "1.png"}
    ignore = str(photos / "circle" / ".retrieveignore")
    assert (walked.excluded, walked.ignore_files) == (4, [ignore])

    idx = tmp_path / "idx"
    built = run("build-index", photos, "--weights", checkpoint, "--index", idx, *FAST,
                "--exclude", "square/", "--exclude", "*.gif")
    assert built.stdout.startswith("Indexed 5 images (5 new, 0 changed, 0 removed, 0 skipped)")
    assert "Not indexed: 3 files or folders excluded (--exclude, .retrieveignore in 1 folder)" \
        in built.stderr
    assert json.loads((idx / "manifest.json").read_text())["exclude"] == ["square/", "*.gif"]
    assert run("info", "--index", idx).stdout.splitlines()[-1] == \
        "Files:        RAW+JPEG pairs as the JPEG; --exclude square/, *.gif"
    again = run("build-index", photos, "--index", idx, *FAST)  # the patterns are kept
    assert again.stdout.startswith("Indexed 5 images (0 new, 0 changed, 0 removed, 0 skipped)")
    assert not any("/square/" in p or p.endswith(".gif") for p in indexed(idx))
    forget = run("build-index", photos, "--index", idx, *FAST, "--exclude", "")
    assert forget.stdout.startswith("Indexed 8 images (3 new, 0 changed, 0 removed, 0 skipped)")
    assert json.loads((idx / "manifest.json").read_text())["exclude"] == []


def test_build_index_watch_on_the_command_line_until_ctrl_c(checkpoint, tmp_path, monkeypatch):
    """The command's side of --watch: its lines, --poll, and Ctrl-C (the events themselves
    come from watchfiles in the next test)."""
    import watchfiles

    photos = drawn_folder(tmp_path / "photos", 1)
    asked = {}

    def events(*roots, **options):  # one burst of changes, then Ctrl-C
        asked.update(options, roots=roots)
        draw_shape(0, seed=99).save(photos / "circle" / "new.png")
        yield {(watchfiles.Change.added, str(photos / "circle" / "new.png"))}
        raise KeyboardInterrupt

    monkeypatch.setattr(watchfiles, "watch", events)
    idx = tmp_path / "idx"
    result = run("build-index", photos, "--weights", checkpoint, "--index", idx, *FAST,
                 "--watch", "--poll", "0.2")
    first, generation = result.stdout.splitlines()
    assert first.startswith("Indexed 4 images (4 new, 0 changed, 0 removed, 0 skipped)")
    assert re.fullmatch(r"\d\d:\d\d:\d\d 1 new, 0 changed, 0 removed, 0 skipped: 5 images",
                        generation)
    assert f"Watching {photos} (looking every 0.2 s); Ctrl-C to stop" in result.stderr
    assert f"Stopped watching; {idx} holds every change committed" in result.stderr
    assert asked["force_polling"] and asked["poll_delay_ms"] == 200 and asked["roots"] == (photos,)
    assert len(indexed(idx)) == 5 and BuildLock(idx).acquire(wait_message=False)


@pytest.mark.slow  # a watching process, killed and started again
def test_a_watch_follows_created_changed_removed_files_and_restarts_after_a_kill(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"{i}.jpg").write_bytes(b"image %d" % i)
    idx = photos / "retrieve-index"  # inside the folder watched: its own commits are no change
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "watch_worker.py"), str(photos), str(idx),
         str(QUIET_MS)], cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.split()) for x in worker.stdout],
                     daemon=True).start()

    def next_build() -> list[str]:
        try:
            return lines.get(timeout=WAIT)
        except queue.Empty:
            worker.kill()
            pytest.fail(worker.stderr.read()[-2000:])
    try:
        assert next_build() == ["3", "0", "0", "0", "3"]  # new changed removed skipped total
        (photos / "3.jpg").write_bytes(b"image 3")
        assert next_build() == ["1", "0", "0", "0", "4"]
        (photos / "0.jpg").write_bytes(b"image 0, edited")
        assert next_build() == ["0", "1", "0", "0", "4"]
        (photos / "1.jpg").unlink()
        assert next_build() == ["0", "0", "1", "0", "3"]
        with pytest.raises(RetrieveError, match=re.escape(
                f"another build-index is running on {idx} (pid {worker.pid}, "
                "build-index --watch since ")):
            build_index(idx, [photos / "0.jpg"], BytesExtractor())
    finally:
        worker.kill()  # SIGKILL: no clean-up of any kind
        worker.wait()
    (photos / "2.jpg").unlink()  # while no one watches
    (photos / "4.jpg").write_bytes(b"image 4")
    check_restart(photos, idx)


def check_restart(photos: Path, idx: Path) -> None:
    """A watch restarted after the kill catches up, then follows by polling (the fallback
    for network mounts), and lets go of the lock when stopped."""
    builds: queue.Queue = queue.Queue()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_index, args=(
        idx, [photos], lambda: find_images([photos], exclude=[idx]), BytesExtractor(),
        BuildConfig(), builds.put), kwargs=dict(poll_ms=50, stop=stop, quiet_ms=QUIET_MS))

    def next_change():  # the next build that changed the index
        while True:
            report = builds.get(timeout=WAIT).report
            if report.new or report.changed or report.removed:
                return report

    watcher.start()
    try:
        caught_up = next_change()
        assert (caught_up.new, caught_up.removed, caught_up.total) == (1, 1, 3)
        (photos / "5.jpg").write_bytes(b"image 5")
        followed = next_change()
        assert (followed.new, followed.total) == (1, 4)
    finally:
        stop.set()
        watcher.join(WAIT)
    assert not watcher.is_alive() and BuildLock(idx).acquire(wait_message=False)
    assert indexed(idx) == {str(photos / f"{i}.jpg") for i in (0, 3, 4, 5)}
