"""build-index under torchrun: 2 CPU processes (gloo), each extracting a share of the files."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import SMALL, draw_shape, same_results
from indexes.store.staging import Staging
from indexes.store.store import open_for_reading
from test_build_query import FAST, ROOT, build, checkpoint, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # three torchrun launches, two ranks each

IMAGES = 20
ARGS = [*FAST, "--batch-size", "2"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(IMAGES):
        draw_shape(i % 4, size=SMALL, seed=i).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def single(photos, checkpoint, tmp_path_factory):  # noqa: F811
    """The same images indexed by one process."""
    index = tmp_path_factory.mktemp("single") / "idx"
    build(photos, index, checkpoint, "--batch-size", "2")
    return index


# `python -m torch.distributed.run ARGS...`, forked from conftest's preloaded process. torchrun
# starts each rank as a process of its own, `python -u tests/preloaded_client.py ARGV...`, which
# has a fork of the same process run `python ARGV...` in its place: neither the launcher nor the
# ranks pay the 4 s of imports of a new interpreter (what the ranks run is the same).
TORCHRUN = "import runpy; runpy.run_module('torch.distributed.run', run_name='__main__')"


def torchrun(preloaded, *args, fault: str | None = None) -> subprocess.CompletedProcess:
    """`retrieve ARGS...` in 2 processes; ``fault``: rank 1 is killed ("kill") or finds the
    disk full ("full") at its second batch (tests/rank_fault.py)."""
    env = {"OMP_NUM_THREADS": "1", "PRELOADED_SOCKET": preloaded.socket}
    if fault:
        target = [str(ROOT / "tests" / "rank_fault.py")]
        env.update(RANK_FAULT=fault, RANK_FAULT_RANK="1")
    else:
        target = ["-m", "cli"]
    client = preloaded.client(*target)[2:]  # torchrun adds `python -u`
    return preloaded.run(TORCHRUN, "--standalone", "--nproc-per-node", "2", *client, *args,
                         env=env)


def items(index) -> dict:
    store = open_for_reading(index)
    try:
        return {path: item.id for path, item in store.items().items()}
    finally:
        store.close()


def neighbours(index, photos) -> dict:
    """`retrieve query --json` of every photo, 5 nearest."""
    return json.loads(run("query", photos, "--index", index, "-k", 5, "--json").stdout)


def test_two_ranks_build_the_index_one_process_builds(
        photos, single, checkpoint, preloaded, tmp_path):  # noqa: F811
    index = tmp_path / "idx"
    done = torchrun(preloaded, "build-index", photos, "--weights", checkpoint, "--index", index,
                    *ARGS)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"Indexed {IMAGES} images ({IMAGES} new, 0 changed, 0 removed, "
                           f"0 skipped) into {index} in " + done.stdout.split(" in ", 1)[1])
    assert done.stdout.count("\n") == 1  # rank 0 reports for both
    assert items(index) == items(single)  # the same paths under the same ids
    assert same_results(neighbours(index, photos), neighbours(single, photos))


def test_a_killed_rank_is_resumed_by_one_process_without_extracting_again(
        photos, single, checkpoint, preloaded, tmp_path):  # noqa: F811
    index = tmp_path / "idx"
    killed = torchrun(preloaded, "build-index", photos, "--weights", checkpoint, "--index", index,
                      *ARGS, fault="kill")
    assert killed.returncode != 0
    staged = Staging(index).rows()
    names = {row.batch for row in staged.values()}
    assert "1-0.npz" in names and "1-1.npz" not in names  # rank 1 died at its second batch
    assert 0 < len(staged) < IMAGES
    again = build(photos, index, checkpoint, "--batch-size", "2")
    assert again.stdout.startswith(f"Indexed {IMAGES} images ({IMAGES} new")
    assert (f"Resumed: {len(staged)} images taken from the interrupted build's staging, not "
            "extracted again") in again.stderr
    assert items(index) == items(single)
    assert same_results(neighbours(index, photos), neighbours(single, photos))


def test_a_rank_that_fails_ends_every_rank_with_one_line(
        photos, checkpoint, preloaded, tmp_path):  # noqa: F811
    index = tmp_path / "idx"
    failed = torchrun(preloaded, "build-index", photos, "--weights", checkpoint, "--index", index,
                      *ARGS, fault="full")
    assert failed.returncode != 0
    ours = [line for line in failed.stderr.splitlines() if line.startswith("Error: ")]
    assert [line for line in ours if "rank 1 of 2" in line] == [
        f"Error: build-index rank 1 of 2: {index}/staging/1-1.npz: No space left on device; the "
        "index keeps its last complete build; fix this and run build-index again (it resumes)"]
    # rank 0: stopped by torchrun, or one line of its own; no Python traceback
    assert len(ours) <= 2 and all("rank 1 of 2" in line or line.startswith(
        "Error: build-index rank 0 of 2: another rank stopped") for line in ours)
    assert "[rank0]: Traceback" not in failed.stderr and "[rank1]: Traceback" not in failed.stderr
    assert not list(index.glob("index-*.faiss"))  # nothing committed
