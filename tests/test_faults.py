"""Faults and attacks: killed builds, two builds at once, damaged files, a full disk, evil files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import SMALL, draw_shape, write_malicious_checkpoint
from indexes.store import files
from indexes.store.store import open_for_reading
from test_build_query import FAST, build, checkpoint, run  # noqa: F401 (fixtures)

NEW = 6  # images added by the build that gets killed, two per batch
BATCH = ["--batch-size", "2"]

# `retrieve ARGS...` (CRASH POINT MARKER ARGS...) with one function replaced by a SIGKILL of
# its process at the named moment ("...-hold": it stops there instead, writes its pid to the
# MARKER file and waits for the test to kill it). Run as a fork of conftest's preloaded
# process: the imports, most of a command's time, are paid once.
CRASH = r"""
import os, signal, sys
import faiss, torch
from cli.main import main
from indexes.store import files, staging
from indexes.store.store import IndexStore

def patch(point, marker):
    def die(*_):
        if point.endswith("-hold"):
            marker_fd = os.open(marker + ".tmp", os.O_WRONLY | os.O_CREAT)
            os.write(marker_fd, str(os.getpid()).encode())
            os.close(marker_fd)
            os.rename(marker + ".tmp", marker)
            signal.pause()
        os.kill(os.getpid(), signal.SIGKILL)

    if point.startswith("staging"):  # two batches staged, the third's file not yet written
        write_batch, calls = staging.write_batch, []
        def third(*a):
            calls.append(a)
            if len(calls) == 3:
                die()
            write_batch(*a)
        staging.write_batch = third
    elif point == "index written":  # .index-2.faiss.tmp written in full, not renamed
        write_index = faiss.write_index
        def written(index, path):
            write_index(index, path)
            die()
        faiss.write_index = written
    elif point == "index renamed":  # index-2.faiss in place, the database still at generation 1
        IndexStore.commit_generation = die
    elif point.startswith("in transaction"):  # items changed in the open SQLite transaction
        set_meta = IndexStore.set_meta
        def before_generation(self, key, value):
            if key == "generation":
                die()
            set_meta(self, key, value)
        IndexStore.set_meta = before_generation
    elif point == "between rounds":  # --commit-every 4: round 1 committed, round 2 not staged
        commit_generation, done = IndexStore.commit_generation, []
        def committed_once(*a):
            done.append(commit_generation(*a))
        write_batch = staging.write_batch
        def after_round(*a):
            if done:
                die()
            write_batch(*a)
        IndexStore.commit_generation, staging.write_batch = committed_once, after_round
    elif point == "committed":  # generation 2 committed; old file, staging, manifest not tidied
        commit_generation = IndexStore.commit_generation
        def committed(*a):
            commit_generation(*a)
            die()
        IndexStore.commit_generation = committed

point, marker, *args = sys.argv[1:]
torch.set_num_threads(1)  # the jobs share the machine's cores
patch(point, marker)
sys.argv = ["retrieve", *args]
main()
"""


def crash(preloaded, jobs: list[tuple[str, Path, list]]) -> dict:
    """Start CRASH on [(point, marker file, command-line args)], side by side: point -> job."""
    return {point: preloaded.start(CRASH, point, marker, *args) for point, marker, args in jobs}


def killed_by_sigkill(preloaded, jobs: dict) -> dict[str, bool]:
    """Wait for each job: point -> whether SIGKILL ended it."""
    statuses = {point: preloaded.wait(job) for point, job in jobs.items()}
    return {point: os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL
            for point, s in statuses.items()}


def errors(jobs: dict) -> str:
    return "".join(job.err.read_text()[-1000:] for job in jobs.values())


@pytest.fixture(scope="module")
def built(tmp_path_factory, checkpoint):  # noqa: F811
    """photos/ with 12 images indexed (generation 1), and NEW more images not yet indexed."""
    root = tmp_path_factory.mktemp("built")
    photos = root / "photos"
    for i in range(12):
        (photos / "old").mkdir(parents=True, exist_ok=True)
        draw_shape(i % 4, size=SMALL, seed=i).save(photos / "old" / f"{i:02d}.png")
    build(photos, root / "idx", checkpoint)
    for i in range(NEW):
        (photos / "new").mkdir(exist_ok=True)
        draw_shape(i % 4, size=SMALL, seed=50 + i).save(photos / "new" / f"{i}.png")
    return photos, root / "idx"


@pytest.fixture
def index(built, tmp_path):
    """A copy of the built index to damage, and its photos."""
    photos, idx = built
    shutil.copytree(idx, tmp_path / "idx")
    return photos, tmp_path / "idx"


def assert_consistent(index: Path, photos: Path) -> tuple[int, int]:
    """Every id in FAISS has its path, every path its id, every path a photo: (generation, count)."""
    store = open_for_reading(index)
    try:
        items = store.items()
        ids = faiss.vector_to_array(store.load_index().id_map)
        generation = store.generation
    finally:
        store.close()
    assert sorted(ids.tolist()) == sorted(i for i, _, _ in items.values())
    assert all(os.fsdecode(p).startswith(str(photos)) and os.path.isfile(p) for p in items)
    return generation, len(items)


def assert_tidy(index: Path, generation: int = 2) -> None:
    names = sorted(p.name for p in index.iterdir())
    assert [n for n in names if n.endswith(".faiss") or n.endswith(".tmp")] == [
        f"index-{generation}.faiss"]
    assert not list((index / files.STAGING).glob("*")) if (index / files.STAGING).exists() else True


FIRST = "staging, first build"  # the "staging" kill, in a build of a new index

# point -> (generation left by the kill, images it holds, images resumed from staging next)
KILL_POINTS = {
    "staging": (1, 12, 4),
    "index written": (1, 12, NEW),
    "index renamed": (1, 12, NEW),
    "in transaction": (1, 12, NEW),
    "between rounds": (2, 16, 0),  # its build commits every 4 images
    "committed": (2, 12 + NEW, 0),
}


@pytest.fixture(scope="module")
def killed(built, checkpoint, preloaded, tmp_path_factory):  # noqa: F811
    """point -> (index copy, stderr) of a build-index SIGKILLed there; all run side by side."""
    photos, idx = built
    copies, jobs = {}, []
    for n, point in enumerate(KILL_POINTS):
        copies[point] = tmp_path_factory.mktemp(f"killed{n}") / "idx"
        shutil.copytree(idx, copies[point])
        rounds = ["--commit-every", "4"] if point == "between rounds" else []
        jobs.append((point, copies[point].parent / "marker", [
            "build-index", photos, "--weights", checkpoint, "--index", copies[point], *FAST, *BATCH,
            *rounds]))
    copies[FIRST] = tmp_path_factory.mktemp("first") / "idx"  # a first build, never committed
    jobs.append((FIRST, copies[FIRST].parent / "marker", [
        "build-index", photos, "--weights", checkpoint, "--index", copies[FIRST], *FAST, *BATCH]))
    started = crash(preloaded, jobs)
    assert killed_by_sigkill(preloaded, started) == {
        point: True for point in [*KILL_POINTS, FIRST]}, errors(started)
    return copies


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_build_leaves_a_consistent_index_and_the_next_run_completes_it(
        point, killed, built, checkpoint):  # noqa: F811
    photos, _ = built
    idx = killed[point]
    generation, count, resumed = KILL_POINTS[point]
    assert assert_consistent(idx, photos) == (generation, count)
    assert run("info", "--index", idx).stdout.splitlines()[1] == f"Images:       {count}"
    again = build(photos, idx, checkpoint, *BATCH)
    assert again.stdout.startswith(f"Indexed {12 + NEW} images ({12 + NEW - count} new, 0 changed, "
                                   "0 removed")
    assert ("Resumed: " in again.stderr) == bool(resumed)
    if resumed:  # staged batches are never extracted again
        assert f"Resumed: {resumed} images taken from the interrupted build's staging" in again.stderr
    final = generation + (count < 12 + NEW)
    assert assert_consistent(idx, photos) == (final, 12 + NEW)
    assert_tidy(idx, final)


def test_a_killed_first_build_is_resumed_by_a_run_that_does_not_name_the_weights(
        killed, built, checkpoint):  # noqa: F811
    photos, _ = built
    idx = killed[FIRST]
    q = run("query", photos / "old" / "00.png", "--index", idx, ok=False)
    assert q.exit_code == 1 and "no build has finished yet" in q.output
    again = run("build-index", photos, "--index", idx, *FAST, *BATCH)  # no --weights
    assert again.stdout.startswith(f"Indexed {12 + NEW} images ({12 + NEW} new, 0 changed")
    assert "Resumed: 4 images taken from the interrupted build's staging" in again.stderr
    assert f"Weights:      {Path(checkpoint).resolve()} " in run("info", "--index", idx).stdout
    assert assert_consistent(idx, photos) == (1, 12 + NEW)


def test_a_second_build_is_refused_while_the_first_runs(index, checkpoint, preloaded, tmp_path):  # noqa: F811
    photos, idx = index
    marker = tmp_path / "holding"
    started = crash(preloaded, [("in transaction-hold", marker, [
        "build-index", photos, "--weights", checkpoint, "--index", idx, *FAST])])
    (job,) = started.values()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), errors(started)
        second = build(photos, idx, checkpoint, ok=False)
        assert second.exit_code == 1
        assert second.output.startswith(f"Error: another build-index is running on {idx} "
                                        f"(pid {marker.read_text()}, build-index since ")
        # readers see the last committed build while the first build holds its transaction
        assert run("info", "--index", idx).stdout.splitlines()[1] == "Images:       12"
    finally:
        os.kill(job.pid, signal.SIGKILL)  # the marker names it too
    assert killed_by_sigkill(preloaded, started) == {"in transaction-hold": True}, errors(started)
    assert assert_consistent(idx, photos) == (1, 12)


DAMAGE = {
    "index truncated": ("index-1.faiss", lambda b: b[: len(b) // 2], "damaged index file"),
    "index garbage": ("index-1.faiss", lambda b: b"\x00" * 100, "damaged index file"),
    "index missing": ("index-1.faiss", None, "index file is missing"),
    "manifest truncated": ("manifest.json", lambda b: b[: len(b) // 2], "damaged"),
    "manifest not ours": ("manifest.json", lambda b: b"{}", "not a retrieve index manifest"),
    "database truncated": ("items.sqlite", lambda b: b[: len(b) // 2], "damaged"),
    "database garbage": ("items.sqlite", lambda b: b"x" * len(b), "damaged (file is not a database)"),
    "database page": ("items.sqlite", lambda b: b[:3 * 4096 + 8] + b"\xff" * 3992 + b[4 * 4096:],
                      "damaged"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_files_are_named_and_rebuild_repairs_them(case, index, checkpoint):  # noqa: F811
    photos, idx = index
    name, damage, reason = DAMAGE[case]
    path = idx / name
    if damage is None:
        path.unlink()
    else:
        path.write_bytes(damage(path.read_bytes()))
    for command in (["info"], ["query", photos / "old" / "00.png"]):
        result = run(*command, "--index", idx, ok=False)
        assert result.exit_code == 1 and result.stdout == "", case
        assert result.stderr.startswith(f"Error: {path}: {reason}"), result.stderr
        assert result.stderr.endswith(f"--index {idx} --rebuild`\n") and result.stderr.count("\n") == 1
    assert "Indexed 18 images (18 new" in build(photos, idx, checkpoint, "--rebuild").stdout
    assert assert_consistent(idx, photos)[1] == 18


@pytest.mark.parametrize("where", ["staging", "index", "index (FAISS)"])
def test_a_full_disk_is_one_line_and_the_old_index_stays(where, index, checkpoint, monkeypatch):  # noqa: F811
    photos, idx = index
    kept = [files.index_file(idx, 1), idx / files.MANIFEST]  # the database records the staging settings
    before = [p.read_bytes() for p in kept]

    def full(*_, **__):
        if where == "index (FAISS)":  # what faiss.write_index raises when fwrite fails
            raise RuntimeError("Error in faiss::FileIOWriter::operator() at impl/io.cpp:98: "
                               "Error: 'ret == n' failed: write error")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "somewhere")

    monkeypatch.setattr(np if where == "staging" else faiss, "savez" if where == "staging"
                        else "write_index", full)
    result = build(photos, idx, checkpoint, *BATCH, ok=False)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert ("write error" if where == "index (FAISS)" else "No space left on device") in result.stderr
    assert result.stderr.endswith("the index keeps its last complete build; fix this and run "
                                  "build-index again (it resumes)\n")
    monkeypatch.undo()
    assert [p.read_bytes() for p in kept] == before
    assert not [p for p in idx.rglob("*") if p.name.endswith(".tmp")]  # no partial file left
    assert assert_consistent(idx, photos) == (1, 12)
    again = build(photos, idx, checkpoint, *BATCH)
    assert again.stdout.startswith("Indexed 18 images (6 new")
    assert ("Resumed: 6 images" in again.stderr) == (where != "staging")


def test_a_checkpoint_that_runs_code_is_refused_by_build_index(built, tmp_path):
    photos, _ = built
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    result = run("build-index", photos, "--weights", tmp_path / "evil.pt", "--index",
                 tmp_path / "idx", *FAST, ok=False)
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'evil.pt'}: refused: it contains code or objects "
                             "other than weights\n")
    assert not marker.exists() and not (tmp_path / "idx").exists()


def test_links_out_of_the_folders_are_neither_written_nor_deleted(index, checkpoint, tmp_path):  # noqa: F811
    photos, idx = index
    outside = tmp_path / "outside"
    outside.mkdir()
    draw_shape(1, size=SMALL, seed=99).save(outside / "target.png")
    (outside / "0.npy").write_bytes(b"keep me")
    (photos / "new" / "link.png").symlink_to(outside / "target.png")
    # a planted staging link: builds must neither stage into it nor tidy it out
    shutil.rmtree(idx / files.STAGING, ignore_errors=True)
    (idx / files.STAGING).symlink_to(outside, target_is_directory=True)
    try:
        build(photos, idx, checkpoint, *BATCH)
        assert sorted(p.name for p in outside.iterdir()) == ["0.npy", "target.png"]
        assert (outside / "0.npy").read_bytes() == b"keep me"
        doc = json.loads(run("query", outside / "target.png", "--index", idx, "-k", 30, "--json").stdout)
        found = [r["path"] for r in doc["queries"][0]["results"]]
        # the link's target is indexed under the link's name; the target's own path never shows
        assert found[0] == str(photos / "new" / "link.png") and len(found) == 19
        assert not any(p.startswith(str(outside)) for p in found)
        (photos / "new" / "link.png").unlink()
        assert "1 removed" in build(photos, idx, checkpoint).stdout
        assert (outside / "target.png").is_file() and assert_consistent(idx, photos) == (3, 18)
    finally:
        shutil.rmtree(photos / "new" / "link.png", ignore_errors=True)
