"""Plans of `retrieve duplicates --plan`: for each group, the file to keep by the user's rules
and what becomes of every other one (trash, move, hard or symbolic link), with the reason.

A plan is JSON a person can read and edit, the page can download, and ``actions.apply``
carries out; each file in it carries its size, mtime and sha256 as they were, so that a plan
whose files changed since is refused instead of acted on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tqdm import tqdm

from retrieval.errors import RetrieveError

from indexes.duplicates import fileops

if TYPE_CHECKING:  # not imported: applying a plan needs neither FAISS nor the pixel check
    from indexes.duplicates.find import Group, Member, Report

FORMAT = "retrieve-duplicates-plan"
VERSION = 1
ACTIONS = ("trash", "move", "hardlink", "symlink")  # what becomes of a file not kept
LINKS = ("hardlink", "symlink")
# The reason a faint copy is kept: a person looks first (Rules.act_on_faint acts on it).
REVIEW = "kept for review, a faint picture (--act-on-faint acts on it)"
# The rules that choose the file to keep, each a sort key (smallest first).
KEEP_RULES: dict[str, Callable[[dict], object]] = {
    "largest": lambda f: (-f["width"] * f["height"], -f["size"]),  # `duplicates`' own order
    "oldest": lambda f: f["mtime_ns"],
    "newest": lambda f: -f["mtime_ns"],
    "shortest-path": lambda f: len(f["path"]),
}


class PlanError(RetrieveError):
    """A plan file that cannot be read or is not self-consistent."""


class PlanChanged(PlanError):
    """A plan whose files changed since it was written: it is not applied."""


def _folders(paths: Iterable[str]) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) for p in paths)


@dataclass
class Rules:
    """What a plan does: ``action`` (one of ACTIONS) for every file not kept, the file to keep
    chosen by ``prefer`` (files under these folders, or these files, win, the first given
    first), then by ``keep`` in order; files under ``protect`` are never touched, nor, unless
    ``act_on_faint``, a near copy whose picture or kept file's is faint (``faint``)."""

    action: str
    move_to: str | None = None
    keep: tuple[str, ...] = ("largest",)
    prefer: tuple[str, ...] = field(default_factory=tuple)
    protect: tuple[str, ...] = field(default_factory=tuple)
    act_on_faint: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise PlanError(f"unknown action {self.action!r}: one of {', '.join(ACTIONS)}")
        if (self.action == "move") != (self.move_to is not None):
            raise PlanError("a move needs a folder to move to (--move-to DIR), and only a move")
        unknown = [r for r in self.keep if r not in KEEP_RULES]
        if unknown:
            raise PlanError(f"unknown keep rule {unknown[0]!r}: one of {', '.join(KEEP_RULES)}")
        self.keep = tuple(self.keep) or ("largest",)
        self.prefer, self.protect = _folders(self.prefer), _folders(self.protect)
        if self.move_to is not None:
            self.move_to = os.path.abspath(self.move_to)


def under(path: str, folders: Iterable[str]) -> str | None:
    """The first of ``folders`` that is ``path`` or holds it (``path`` and each folder above
    it looked up: the page's choices give a file per group, thousands of them)."""
    first = _firsts(tuple(folders))
    if not first:
        return None
    found, at = None, len(first)
    for place in _places(path):
        hit = first.get(place)
        if hit is not None and hit[0] < at:
            at, found = hit
    return found


@functools.lru_cache(maxsize=16)
def _firsts(folders: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    """folder without its last separator -> (its first position, the folder as given)."""
    out: dict[str, tuple[int, str]] = {}
    for n, folder in enumerate(folders):
        out.setdefault(folder.rstrip(os.sep) or os.sep, (n, folder))
    return out


def _places(path: str) -> Iterator[str]:
    """``path``, then every folder above it, up to the root."""
    yield path.rstrip(os.sep) or os.sep
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
        yield path


def collection_root(paths: Iterable[str]) -> str:
    """The deepest folder holding every one of ``paths``: moves keep the paths below it."""
    folders = {os.path.dirname(p) for p in paths}
    return os.path.commonpath(folders) if folders else os.sep


def _entry(m: Member) -> dict:
    try:
        st = os.stat(m.path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime_ns = m.bytes, 0
    entry = {"path": m.path, "id": m.id, "action": "keep", "reason": "", "size": size,
             "mtime_ns": mtime_ns, "width": m.width, "height": m.height,
             "distance": m.distance, "similarity": m.similarity, "difference": m.difference}
    if m.same_bytes_as is not None:
        entry["same_bytes_as"] = m.same_bytes_as
    return entry


def _given(path: str, folder: str) -> str:
    """How a --prefer or --protect ``folder`` holds ``path``: a file may be given itself."""
    return "this file given" if path == folder else f"under {folder}"


def _when(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime_ns / 1e9))


def _why_kept(kept: dict, runner_up: dict | None, rules: Rules) -> str:
    """The first rule by which ``kept`` beat the next file."""
    preferred = under(kept["path"], rules.prefer)
    if preferred is not None:
        said = f"preferred: {_given(kept['path'], preferred)}"
        if runner_up is None or under(runner_up["path"], rules.prefer) != preferred:
            return said
        return f"{said}, then {_why_kept(kept, runner_up, dataclasses.replace(rules, prefer=()))}"
    for rule in rules.keep:
        if runner_up is None or KEEP_RULES[rule](kept) != KEEP_RULES[rule](runner_up):
            return {"largest": f"largest ({kept['width']}x{kept['height']}, "
                               f"{kept['size'] / 1e6:.2f} MB)",
                    "oldest": f"oldest (modified {_when(kept['mtime_ns'])})",
                    "newest": f"newest (modified {_when(kept['mtime_ns'])})",
                    "shortest-path": "shortest path"}[rule]
    return "first by path (the rules tie)"


def _why_copy(f: dict, tier: str) -> str:
    if tier == "exact":
        return "same bytes as the kept file"
    if f.get("same_bytes_as") is not None:
        return f"same bytes as {f['same_bytes_as']}"
    if f["distance"] == 0 and f["similarity"] == 1.0:
        return "the file the others were found to be copies of"
    if f["similarity"] is None:
        return f"fc7 distance {f['distance']:.4g} (pixels not compared)"
    return (f"a copy: pixels {f['similarity']:.3f} alike, {f['difference']:.3f} differing, "
            f"fc7 distance {f['distance']:.4g}")


def plan_group(group: Group, rules: Rules, root: str,
               faint_of: Mapping[str, bool] | None = None) -> dict:
    """``{"tier", "files": [...]}``: the file to keep first, every file with its action and
    reason (no hashes: ``make_plan`` adds them); a near copy whose picture or the kept file's
    is faint marked ``"faint": true`` (``faint_of``: path -> faint, as ``faintness`` saved
    it; a file not in it is looked at here)."""
    def faint(path: str) -> bool:
        return faint_of[path] if faint_of is not None and path in faint_of else looks_faint(path)

    files = [_entry(m) for m in group.members]
    rank = {folder: n for n, folder in enumerate(rules.prefer)}
    order = sorted(files, key=lambda f: (
        rank.get(under(f["path"], rules.prefer), len(rank)),
        *[KEEP_RULES[r](f) for r in rules.keep], f["path"]))
    kept = order[0]
    kept["reason"] = _why_kept(kept, order[1] if len(order) > 1 else None, rules)
    others = [f for f in files if f is not kept]  # as the report has them: nearest first
    if group.tier == "near":
        kept_faint = faint(kept["path"])
        for f in others:
            if not _same_bytes(f, kept) and (kept_faint or faint(f["path"])):
                f["faint"] = True
    for f in others:
        _decide(f, kept, group.tier, rules, root)
    return {"tier": group.tier, "files": [kept, *others]}


def near_paths(groups: Iterable[Group]) -> list[str]:
    """The files of ``groups`` that a plan asks whether they are faint: near groups' members."""
    return [m.path for g in groups if g.tier == "near" for m in g.members]


def looks_faint(path: str) -> bool:
    """Whether the picture of the file at ``path`` is faint (a plain colour, a blank page, a
    smooth gradient, a faint paper: ``retrieval.copies.shows_next_to_nothing``): the pixel
    check cannot tell its copy for certain from another picture of its colour, so a plan acts
    on such a pair only when asked to (``Rules.act_on_faint``)."""
    from retrieval.copies import shows_next_to_nothing  # only to make a plan, not to apply one

    return shows_next_to_nothing(path)


def _decide(f: dict, kept: dict, tier: str, rules: Rules, root: str) -> None:
    """``f``'s action and reason (``keep`` where the action cannot or must not happen)."""
    protected = under(f["path"], rules.protect)
    if protected is not None:
        f["reason"] = f"protected: {_given(f['path'], protected)}"
        return
    if fileops.is_link_to(f["path"], kept["path"], "hardlink") or fileops.is_link_to(
            f["path"], kept["path"], "symlink"):
        f["reason"] = "already a link to the kept file"
        return
    if f.get("faint") and not rules.act_on_faint:
        f["reason"] = f"{REVIEW}: {_why_copy(f, tier)}"
        return
    f["reason"] = _why_copy(f, tier)
    if rules.action == "move":
        to = os.path.join(rules.move_to, os.path.relpath(f["path"], root))
        if os.path.lexists(to):
            f["reason"] = f"not moved: {to} already exists"
            return
        f["to"] = to
    elif rules.action in LINKS:
        if rules.action == "hardlink" and not _same_device(f["path"], kept["path"]):
            f["reason"] = "not linked: on another file system than the kept file"
            return
        f["target"] = kept["path"]
        if tier != "exact" and not _same_bytes(f, kept):
            f["reason"] += "; its own bytes go to the trash"
    f["action"] = rules.action


def _same_bytes(f: dict, kept: dict) -> bool:
    """Whether a near group's ``f`` and ``kept`` are exact copies of each other (folded in
    from a group of exact copies: dup_groups.folded)."""
    a, b = f.get("same_bytes_as"), kept.get("same_bytes_as")
    return a == kept["path"] or b == f["path"] or (a is not None and a == b)


def _same_device(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def make_plan(report: Report, rules: Rules, root: str, progress: bool = False,
              workers: int = 0) -> dict:
    """The plan of ``report``'s groups under ``rules``, every file's sha256 read; whether
    each near copy is faint read once for the index (``find.faintness``, in ``workers``
    processes for many files)."""
    from indexes.duplicates.find import faintness  # the pixel check, only to make a plan

    faint_of = faintness(report.index, near_paths(report.groups), workers, progress)
    groups = [plan_group(g, rules, root, faint_of) for g in report.groups]
    files = [f for g in groups for f in g["files"]]
    for f in tqdm(files, desc="hashing", unit="files", disable=not progress, leave=False):
        f["sha256"] = fileops.sha256(f["path"])
    return {"format": FORMAT, "version": VERSION, "index": report.index,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": rules.action, "move_to": rules.move_to, "root": root,
            "keep": list(rules.keep), "prefer": list(rules.prefer),
            "protect": list(rules.protect), "act_on_faint": rules.act_on_faint,
            "groups": groups}


def plan_id(plan: dict) -> str:
    """A name for the plan from its content: the same plan file, the same journal."""
    text = json.dumps(plan, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def summary(plan: dict) -> dict[str, int]:
    """How many files each action takes, ``bytes``: the size of those acted on, and
    ``review``: the faint copies kept (of ``keep``'s)."""
    counts = {a: 0 for a in ("keep", *ACTIONS)}
    counts["bytes"] = counts["review"] = 0
    for g in plan["groups"]:
        for f in g["files"]:
            counts[f["action"]] += 1
            counts["bytes"] += f["size"] if f["action"] != "keep" else 0
            counts["review"] += f["action"] == "keep" and bool(f.get("faint"))
    return counts


def text(plan: dict, printable=str) -> str:
    """The plan file by file: each group, then each file's action, path, size and reason."""
    out = []
    for g in plan["groups"]:
        title = "exact copies" if g["tier"] == "exact" else "near-duplicates"
        lines = [f"{title} ({len(g['files'])} files):"]
        for f in g["files"]:
            where = f" -> {printable(f['to'])}" if "to" in f else ""
            lines.append(f"  {f['action']:<8} {printable(f['path'])}{where}  ({f['width']}x"
                         f"{f['height']}, {f['size'] / 1e6:.2f} MB)  {f['reason']}")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def read(path: str) -> dict:
    """The plan in the file ``path``, checked to be one and to hold together (PlanError
    naming the file)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            plan = json.load(f)
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan ({e.strerror})") from None
    except ValueError as e:
        raise PlanError(f"{path}: not a plan (not JSON: {e})") from None
    problem = _problem(plan)
    if problem is not None:
        raise PlanError(f"{path}: {problem}")
    return plan


def _problem(plan) -> str | None:
    """What makes ``plan`` unusable, or None."""
    if not isinstance(plan, dict) or plan.get("format") != FORMAT:
        return "not a plan of `retrieve duplicates --plan`"
    if not isinstance(plan.get("version"), int) or plan["version"] > VERSION:
        return f"a plan of version {plan.get('version')}; this retrieve reads version {VERSION}"
    if not isinstance(plan.get("index"), str) or not isinstance(plan.get("groups"), list):
        return "a plan needs its index and its groups"
    seen: set[str] = set()
    for n, g in enumerate(plan["groups"], 1):
        files = g.get("files") if isinstance(g, dict) else None
        if not isinstance(files, list) or not files:
            return f"group {n} has no files"
        problem = _group_problem(files, seen)
        if problem is not None:
            return f"group {n}: {problem}"
    return None


def _group_problem(files: list, seen: set[str]) -> str | None:
    kept = set()
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("path"), str)
                and os.path.isabs(f["path"]) and f.get("action") in ("keep", *ACTIONS)
                and isinstance(f.get("size"), int) and isinstance(f.get("mtime_ns"), int)):
            return "each file needs an absolute path, an action, its size and mtime_ns"
        for key in ("path", "to"):
            if key in f:
                if f[key] in seen:
                    return f"{f[key]} is in the plan twice"
                seen.add(f[key])
        if f["action"] == "keep":
            kept.add(f["path"])
    if len(kept) == len(files):
        return None
    if not kept:
        return "no file is kept: that would lose the picture"
    for f in files:
        if f["action"] == "move" and not (isinstance(f.get("to"), str)
                                          and os.path.isabs(f["to"])):
            return f"{f['path']}: a move needs an absolute 'to'"
        if f["action"] in LINKS and f.get("target") not in kept:
            return f"{f['path']}: a link needs a 'target' that the group keeps"
    return None


def changed(f: dict) -> str | None:
    """How the file of plan entry ``f`` differs from what the plan saw, or None."""
    now = fileops.stamp(f["path"], with_hash=False)
    if now is None:
        return "it is gone"
    if now.size != f["size"]:
        return f"its size is {now.size} bytes, not {f['size']}"
    if now.mtime_ns != f["mtime_ns"]:
        return "it was modified"
    if f.get("sha256") and fileops.sha256(f["path"]) != f["sha256"]:
        return "its bytes differ"
    return None
