"""Acting on duplicates: plans and keep rules, every action undone, a plan refused after its
files changed, a SIGKILL in the middle of applying, "not duplicates" decisions kept across
runs, and trashed files gone from query and serve at once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from indexes.duplicates import actions, plans
from indexes.duplicates.find import Group, Member, Report

ROOT = Path(__file__).resolve().parents[1]


def picture(seed: int, size=(96, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    low = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC)
    noise = rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(low, float) + noise, 0, 255).astype(np.uint8))


def make_files(folder: Path, seed: int = 0) -> dict[str, Path]:
    """a/k.png with its byte copy b/k-copy.png; a/n.png with a smaller JPEG b/n-small.jpg."""
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    picture(seed).save(folder / "a" / "k.png")
    shutil.copy(folder / "a" / "k.png", folder / "b" / "k-copy.png")
    n = picture(seed + 1)
    n.save(folder / "a" / "n.png")
    n.resize((48, 36)).save(folder / "b" / "n-small.jpg", quality=90)
    return {k: folder / p for k, p in (("K", "a/k.png"), ("E", "b/k-copy.png"),
                                       ("N2", "a/n.png"), ("N", "b/n-small.jpg"))}


def report_of(files: dict[str, Path], index: Path) -> Report:
    """The report `retrieve duplicates` makes of make_files' folder (ids as in a build)."""
    def member(i, key, distance=0.0, similarity=1.0, difference=0.0):
        path = str(files[key])
        with Image.open(path) as img:
            return Member(i, path, distance, similarity, difference, *img.size,
                          os.path.getsize(path))
    groups = [Group("exact", [member(0, "K"), member(1, "E")]),
              Group("near", [member(2, "N2"), member(3, "N", 0.5, 0.99, 0.05)])]
    return Report(str(index), 4, 1.0, "given", groups, 1, 1)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file under ``folder``: (sha256 of its bytes, mtime_ns, mode), links not followed."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if not p.is_dir():
            data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            out[str(p.relative_to(folder))] = (hashlib.sha256(data).hexdigest(), st.st_mtime_ns,
                                               st.st_mode)
    return out


def in_trash(trash: Path, folder: Path) -> dict[str, bytes]:
    """original path -> bytes of the files in ``trash`` that came from ``folder``."""
    out = {}
    for info in (trash / "info").glob("*.trashinfo") if (trash / "info").exists() else []:
        original = info.read_text().split("Path=")[1].split("\n")[0]
        name = info.name.removesuffix(".trashinfo")
        if original.startswith(str(folder)):
            out[original] = (trash / "files" / name).read_bytes()
    return out


@pytest.fixture
def trash_home(tmp_path, monkeypatch):
    """The user's trash moved into tmp_path (send2trash reads $XDG_DATA_HOME when imported)."""
    from send2trash import plat_other

    data = tmp_path / "home" / ".local" / "share"
    data.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data / "Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(data / "Trash"))
    return data / "Trash"


def write_plan(folder: Path, action: str, name="plan.json", **rules) -> Path:
    files = make_files(folder / "photos") if not (folder / "photos").exists() else {
        k: folder / "photos" / p for k, p in (("K", "a/k.png"), ("E", "b/k-copy.png"),
                                              ("N2", "a/n.png"), ("N", "b/n-small.jpg"))}
    (folder / "idx").mkdir(exist_ok=True)  # the index folder, where journals are kept
    move_to = str(folder / "dups") if action == "move" else None
    plan = plans.make_plan(report_of(files, folder / "idx"),
                           plans.Rules(action, move_to, **rules), str(folder / "photos"))
    (folder / name).write_text(json.dumps(plan))
    return folder / name


@pytest.mark.parametrize("action", plans.ACTIONS)
def test_each_action_is_done_as_planned_and_undone(action, tmp_path, trash_home):
    plan_file = write_plan(tmp_path, action)
    photos = tmp_path / "photos"
    plan = json.loads(plan_file.read_text())
    assert [[(Path(f["path"]).name, f["action"]) for f in g["files"]] for g in plan["groups"]] == [
        [("k.png", "keep"), ("k-copy.png", action)], [("n.png", "keep"), ("n-small.jpg", action)]]
    assert plan["groups"][0]["files"][0]["reason"] == "first by path (the rules tie)"
    assert plan["groups"][1]["files"][0]["reason"].startswith("largest (96x72, ")
    before = snapshot(photos)
    done = actions.apply(plan_file)
    assert (done.files, done.problems) == ({action: 2}, [])
    copy, near = photos / "b" / "k-copy.png", photos / "b" / "n-small.jpg"
    kept = {copy: photos / "a" / "k.png", near: photos / "a" / "n.png"}
    trashed = in_trash(trash_home, photos)
    if action == "trash":
        assert not copy.exists() and not near.exists()
        assert set(trashed) == {str(copy), str(near)}
    elif action == "move":
        assert not copy.exists() and not near.exists()
        assert {str(p.relative_to(tmp_path / "dups")) for p in (tmp_path / "dups").rglob("*.*")
                } == {"b/k-copy.png", "b/n-small.jpg"}
    else:
        for path, target in kept.items():
            assert (path.is_symlink() if action == "symlink" else path.samefile(target))
            assert path.read_bytes() == target.read_bytes()
        assert set(trashed) == {str(near)}  # its own bytes kept for the undo; the copy's are k's
    assert sorted(p.name for p in photos.glob("*/.*")) == []  # no leftovers beside the files
    undone = actions.undo(plan_file)
    assert (undone.files, undone.problems) == ({action: 2}, [])
    assert snapshot(photos) == before  # bytes, mtime and mode
    assert in_trash(trash_home, photos) == {}
    assert not any((tmp_path / "dups").rglob("*")) if action == "move" else True
    again = actions.apply(plan_file)  # an undone plan can be applied again: its files are back
    assert again.files == {action: 2} and actions.undo(plan_file).files == {action: 2}


def test_a_plan_is_refused_when_its_files_changed(tmp_path, trash_home):
    photos = tmp_path / "photos"

    copy, kept = photos / "b" / "k-copy.png", photos / "a" / "k.png"

    def same_stamp_other_bytes():  # the same size and mtime: the hash tells
        st = copy.stat()
        copy.write_bytes(bytes(st.st_size))
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))

    changes = [(copy, lambda: copy.write_bytes(copy.read_bytes() + b"x"), "its size is"),
               (copy, lambda: os.utime(copy, ns=(0, 0)), "it was modified"),
               (copy, same_stamp_other_bytes, "its bytes differ"),
               (kept, kept.unlink, "it is gone")]  # the file to keep: its copies stay
    for n, (path, change, why) in enumerate(changes):
        plan_file = write_plan(tmp_path, "trash", name=f"plan{n}.json")
        change()
        before = snapshot(photos)
        r = CliRunner().invoke(cli, ["duplicates", "--apply", str(plan_file)])
        assert r.exit_code == 1
        assert r.output.startswith(f"Error: {plan_file}: {path} changed since the plan was "
                                   f"written ({why}") and r.output.count("\n") == 1, r.output
        assert snapshot(photos) == before and in_trash(trash_home, photos) == {}
        shutil.rmtree(photos)
    plan_file = write_plan(tmp_path, "move")
    (tmp_path / "dups" / "b").mkdir(parents=True)
    (tmp_path / "dups" / "b" / "n-small.jpg").write_bytes(b"taken")
    r = CliRunner().invoke(cli, ["duplicates", "--apply", str(plan_file)])
    assert r.exit_code == 1 and "n-small.jpg already exists; the plan would move" in r.output
    assert (photos / "b" / "k-copy.png").exists()  # refused as a whole: nothing moved


def test_keep_rules_prefer_and_protect(tmp_path):
    photos = tmp_path / "photos"
    files = make_files(photos)
    shutil.copy(files["N"], photos / "b" / "n-small-2.jpg")
    (photos / "deep" / "er").mkdir(parents=True)
    picture(1, (80, 60)).save(photos / "deep" / "er" / "n-third.png")
    paths = [files["N2"], files["N"], photos / "b" / "n-small-2.jpg",
             photos / "deep" / "er" / "n-third.png"]
    for age, p in zip((1, 0, 2, 3), paths):  # n-small.jpg the oldest, n-third.png the newest
        os.utime(p, ns=(10**18 + age * 10**9, 10**18 + age * 10**9))
    report = report_of(files, tmp_path / "idx")
    group = Group("near", [report.groups[1].members[0], report.groups[1].members[1]] + [
        Member(4 + n, str(p), 0.5, 0.99, 0.05, *Image.open(p).size, p.stat().st_size)
        for n, p in enumerate(paths[2:])])

    def planned(**rules):
        g = plans.plan_group(group, plans.Rules("trash", **rules), str(photos))
        return [(str(Path(f["path"]).relative_to(photos)), f["action"], f["reason"].split(" (")[0])
                for f in g["files"]]

    assert planned()[0] == ("a/n.png", "keep", "largest")
    assert planned(keep=("oldest",))[0] == ("b/n-small.jpg", "keep", "oldest")
    assert planned(keep=("newest",))[0] == ("deep/er/n-third.png", "keep", "newest")
    assert planned(keep=("shortest-path", "oldest"))[0] == ("a/n.png", "keep", "shortest path")
    assert planned(prefer=(str(photos / "b"),))[0] == (  # the two in b/ tie: by path
        "b/n-small-2.jpg", "keep", f"preferred: under {photos / 'b'}, then first by path")
    protected = planned(protect=(str(photos / "b"),))
    assert [a for _, a, _ in protected] == ["keep", "keep", "keep", "trash"]
    assert protected[1][2] == "protected: under " + str(photos / "b")
    inside = plans.plan_group(group, plans.Rules("trash", protect=(str(photos),)), str(photos))
    assert {f["action"] for f in inside["files"]} == {"keep"}  # only reported
    assert actions.steps({"groups": [inside]}) == []
    r = CliRunner().invoke(cli, ["duplicates", "--keep", "oldest", "--plan", "p.json"])
    assert r.exit_code == 2 and "--plan: say what becomes of the copies: --trash" in r.output


def test_a_faint_copy_is_kept_for_review_unless_asked(tmp_path):
    """A plain picture's copy (or a copy of a plain picture kept first) matches any picture
    of its colour: a plan keeps it, saying why, unless told to act on faint copies; its byte
    copy, and copies of a picture with shapes, are acted on as ever."""
    photos = tmp_path / "photos"
    files = make_files(photos)
    plain, framed = photos / "a" / "plain.png", photos / "b" / "framed-q80.jpg"
    Image.new("RGB", (96, 72), (200, 190, 170)).save(plain)
    bordered = Image.new("RGB", (104, 80), (255, 255, 255))  # a plain colour inside a frame
    bordered.paste(Image.new("RGB", (96, 72), (200, 190, 170)), (4, 4))
    bordered.save(framed, quality=80)
    shutil.copy(plain, photos / "b" / "plain-copy.png")
    report = report_of(files, tmp_path / "idx")
    members = [Member(5 + n, str(p), 0.3, 0.99, 0.01, *Image.open(p).size, p.stat().st_size)
               for n, p in enumerate((plain, framed, photos / "b" / "plain-copy.png"))]
    members[2].same_bytes_as = str(plain)
    faint_group = Group("near", members)

    def planned(group, **rules):
        g = plans.plan_group(group, plans.Rules("trash", **rules), str(photos))
        return [(Path(f["path"]).name, f["action"], f.get("faint", False)) for f in g["files"]]

    assert planned(faint_group) == [("framed-q80.jpg", "keep", False),
                                    ("plain.png", "keep", True), ("plain-copy.png", "keep", True)]
    assert planned(faint_group, keep=("shortest-path",)) == [
        ("plain.png", "keep", False), ("framed-q80.jpg", "keep", True),
        ("plain-copy.png", "trash", False)]  # its bytes are the kept file's
    assert planned(faint_group, act_on_faint=True) == [
        ("framed-q80.jpg", "keep", False), ("plain.png", "trash", True),
        ("plain-copy.png", "trash", True)]
    assert planned(report.groups[1]) == [("n.png", "keep", False), ("n-small.jpg", "trash", False)]
    plan = plans.make_plan(Report(str(tmp_path / "idx"), 7, 1.0, "given",
                                  [report.groups[1], faint_group], 2, 2),
                           plans.Rules("trash"), str(photos))
    assert plan["act_on_faint"] is False
    reason = plan["groups"][1]["files"][1]["reason"]
    assert reason.startswith("kept for review, a faint picture (--act-on-faint acts on it): "
                             "a copy: pixels 0.990 alike")
    assert {k: v for k, v in plans.summary(plan).items() if v and k != "bytes"} == {
        "keep": 4, "trash": 1, "review": 2}
    r = CliRunner().invoke(cli, ["duplicates", "--act-on-faint"])
    assert r.exit_code == 2 and "--act-on-faint: say what becomes of the copies" in r.output


# Runs `retrieve duplicates --apply PLAN` once per job in a forked process, SIGKILLed at the
# job's point; the imports are paid once. Prints "point<TAB>wait status" per job.
KILL = r"""
import json, os, signal, sys
from cli.main import main
import cli.duplicates, indexes.duplicates.actions, send2trash.plat_other  # noqa
from indexes.duplicates import fileops, trash

def kill_after(module, name, calls, before=False):
    real, count = getattr(module, name), []
    def wrapped(*a, **k):
        count.append(1)
        if before and len(count) == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **k)
        if len(count) == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(module, name, wrapped)

POINTS = {  # where the kill falls
    "trash": lambda: kill_after(trash, "put", 2),  # the 2nd file in the trash, not journalled
    "hardlink": lambda: kill_after(trash, "put", 1),  # the near copy trashed, no link in place
    "move": lambda: kill_after(fileops, "fsync_dir", 1, before=True),  # at both places
}
for point, plan in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        POINTS[point]()
        sys.argv = ["retrieve", "duplicates", "--apply", plan, "-q"]
        try:
            main()
        except SystemExit as e:
            os._exit(e.code if isinstance(e.code, int) else 1)
        os._exit(0)
    print(f"{point}\t{os.waitpid(pid, 0)[1]}", flush=True)
"""


def test_a_sigkill_while_applying_loses_no_file_and_undo_or_a_rerun_completes(tmp_path,
                                                                                trash_home):
    jobs, befores = [], {}
    for point, then in (("trash", "undo"), ("hardlink", "rerun"), ("move", "rerun")):
        folder = tmp_path / point
        jobs.append((point, str(write_plan(folder, point)), folder, then))
        befores[folder] = snapshot(folder / "photos")
    proc = subprocess.run(
        [sys.executable, "-c", KILL, json.dumps([(p, plan) for p, plan, _, _ in jobs])],
        cwd=ROOT, text=True, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    statuses = [int(line.split("\t")[1]) for line in proc.stdout.splitlines()]
    assert [os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses] == [
        True] * len(jobs), proc.stderr[-2000:]
    for point, plan, folder, then in jobs:
        photos = folder / "photos"
        trashed = in_trash(trash_home, photos).values()
        everywhere = {*(v[0] for v in snapshot(photos).values()),
                      *(hashlib.sha256(b).hexdigest() for b in trashed),
                      *(v[0] for v in (snapshot(folder / "dups") if (folder / "dups").exists()
                                       else {}).values())}
        assert {v[0] for v in befores[folder].values()} <= everywhere, point  # no file lost
        if then == "rerun":
            r = CliRunner().invoke(cli, ["duplicates", "--apply", plan])
            assert r.exit_code == 0, r.output
            assert f"Applied {plan}: " in r.stderr
            # the kill fell in the 2nd step of the trash and hardlink plans, the 1st of the move
            assert ("(1 done by an earlier run)" in r.stderr) == (point != "move"), r.stderr
            assert not (photos / "b" / "n-small.jpg").is_file() or point == "hardlink"
        r = CliRunner().invoke(cli, ["duplicates", "--undo", plan])
        assert r.exit_code == 0, r.output
        assert snapshot(photos) == befores[folder], (point, then)
        assert in_trash(trash_home, photos) == {}


def duplicates(index, *extra):
    r = CliRunner().invoke(cli, ["duplicates", "--index", str(index), "--device", "cpu",
                                 "--workers", "0", "--threshold", "1e9", *map(str, extra)])
    assert r.exit_code == 0, r.output
    return r


def test_decisions_last_across_runs_and_applied_plans_leave_query_and_serve(tmp_path,
                                                                            trash_home):
    from functools import partial

    from fastapi.testclient import TestClient

    from cli.app import create_app
    from conftest import tiny_checkpoint
    from openapi_check import conforms
    from indexes.search.service import IndexService
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    files = make_files(tmp_path / "photos")
    picture(7).save(tmp_path / "photos" / "a" / "other.png")
    idx = tmp_path / "idx"
    r = CliRunner().invoke(cli, ["build-index", str(tmp_path / "photos"), "--index", str(idx),
                                 "--weights", str(tiny_checkpoint(tmp_path / "t.pt")), "-q",
                                 "--workers", "0"])
    assert r.exit_code == 0, r.output

    def groups(doc):
        return sorted(sorted(Path(p).name for p in g["paths"]) for g in doc["groups"])

    assert groups(json.loads(duplicates(idx, "--json", "-q").stdout)) == [
        ["k-copy.png", "k.png"], ["n-small.jpg", "n.png"]]
    r = duplicates(idx, "--not-duplicates", files["N"], files["N2"])
    assert r.stderr == f"1 new pair marked as not duplicates ({idx}/decisions.sqlite).\n"
    assert duplicates(idx, "--decisions").stdout == f"{files['N2']}  {files['N']}\n"
    again = duplicates(idx)  # a later run, in a new process as far as the index knows
    assert "n-small.jpg" not in again.stdout and "k-copy.png" in again.stdout
    assert again.stderr.endswith("; 1 set apart by your decisions\n")
    plan_file = tmp_path / "plan.json"
    r = duplicates(idx, "--trash", "--keep", "newest", "--plan", plan_file)
    assert r.stdout.splitlines()[1:3] == [
        f"  keep     {files['E']}  (96x72, {files['E'].stat().st_size / 1e6:.2f} MB)  newest "
        f"(modified {plans._when(files['E'].stat().st_mtime_ns)})",
        f"  trash    {files['K']}  (96x72, {files['K'].stat().st_size / 1e6:.2f} MB)  same "
        "bytes as the kept file"]
    assert r.stderr.startswith("Plan: 1 file to the trash (0.0") and "1 kept; written" in r.stderr

    h = {"Authorization": "Bearer t"}
    service = IndexService(idx, partial(FeatureExtractor.load, config=ExtractConfig(1, 0, "cpu")))
    try:
        with TestClient(create_app(service, token="t")) as c:
            page = c.get("/api/duplicates/groups", headers=h,
                         params={"threshold": 1e9, "keep": "newest"}).json()
            assert page["total"] == 1 and page["groups"] == [  # the plan, less the hashes
                {**g, "files": [{k: v for k, v in f.items() if k != "sha256"} for f in g["files"]]}
                for g in json.loads(plan_file.read_text())["groups"]]
            assert c.post("/api/duplicates/forget-decision", headers=h,
                          json={"paths": [str(files["N"])]}).json() == {"forgotten": 1}
            assert c.get("/api/duplicates/groups", headers=h,
                         params={"threshold": 1e9}).json()["total"] == 2
            download = c.post("/api/duplicates/plan", headers=h,
                              json={"threshold": 1e9, "keep": ["newest"]})
            assert download.headers["content-disposition"] == 'attachment; filename="plan.json"'
            refused = c.post("/api/duplicates/apply", headers=h, json=download.json())
            assert refused.status_code == 403 and "--allow-actions" in refused.json()["error"]
        with TestClient(create_app(service, token="t", allow_actions=True)) as c:
            spec = c.get("/openapi.json").json()  # what they answer is what it declares
            moving = c.post("/api/duplicates/plan", headers=h, json={
                "threshold": 1e9, "action": "move", "move_to": str(tmp_path / "dups")}).json()
            refused = c.post("/api/duplicates/apply", headers=h, json=moving)
            assert refused.status_code == 403 and "moves files only into" in refused.text
            applied = c.post("/api/duplicates/apply", headers=h, json=download.json())
            assert conforms(spec, "post", "/api/duplicates/apply", refused)[2] == 403
            assert conforms(spec, "post", "/api/duplicates/apply", applied)[2] == 200
            applied = applied.json()
            assert applied["files"] == {"trash": 2} and applied["problems"] == []
            q = CliRunner().invoke(cli, ["query", str(files["E"]), "--index", str(idx), "--json"])
            found = [Path(x["path"]).name for x in json.loads(q.stdout)["queries"][0]["results"]]
            assert sorted(found) == ["k-copy.png", "n-small.jpg", "other.png"]  # not the trashed
            gone = c.get("/api/duplicates/gone", headers=h).json()["gone"]
            assert sorted(Path(g["path"]).name for g in gone) == ["k.png", "n.png"]
            thumb = c.get(f"/api/items/{gone[0]['id']}/thumbnail", headers=h)
            assert thumb.status_code == 410 and "was moved to the trash by `retrieve duplicates " \
                                                 "--apply`" in thumb.json()["error"]
            assert duplicates(idx, "--json", "-q").stdout.count('"paths"') == 0
            undone = c.post("/api/duplicates/undo", headers=h, json={"journal": applied["journal"]})
            assert undone.json()["files"] == {"trash": 2}
            assert conforms(spec, "post", "/api/duplicates/undo", undone)[2] == 200
            assert c.get("/api/duplicates/groups", headers=h,
                         params={"threshold": 1e9}).json()["total"] == 2
    finally:
        service.close()


def test_a_journal_cut_by_a_crash_is_read_and_one_run_at_a_time_holds_it(tmp_path):
    from indexes.duplicates.journal import Journal, JournalError

    path = tmp_path / "plan-x.jsonl"
    j = Journal(path, {"plan": "p"})
    j.write({"step": 1, "begin": "trash", "path": "/a"})
    with pytest.raises(JournalError, match="another apply or undo of this plan is running"):
        Journal(path)
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"step": 1, "do')  # a record cut in the middle: never fsynced, never acted on
    j = Journal(path)
    assert j.steps() == {1: {"begin": {"step": 1, "begin": "trash", "path": "/a"},
                             "state": "begin"}}
    j.write({"step": 1, "done": True})
    j.close()
    assert [json.loads(line) for line in path.read_text().splitlines()][1:] == [
        {"step": 1, "begin": "trash", "path": "/a"}, {"step": 1, "done": True}]
