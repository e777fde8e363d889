"""The duplicates routes of `retrieve serve` for the review page: the search as a background
job (started or joined, its progress, cancelled); the groups a page at a time, each as a plan
would have it; "not duplicates" decisions; the plan to download (the JSON `retrieve duplicates
--apply` takes); and applying or undoing one, only with `serve --allow-actions` (which needs a
token). Thin over indexes/dup_jobs, plans, actions, decisions.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cli import schemas as s
from cli.output import to_json
from indexes.config import MAX_DIFFERENCE, MIN_SIMILARITY, VERIFY_WORKERS, DuplicatesConfig
from indexes.duplicates import actions, journal, plans
from indexes.duplicates.decisions import Decisions
from indexes.search.service import IndexService
from indexes.store import gone
from retrieval.atomic import write_atomic

MAX_GROUPS = 500  # groups in one page of /api/duplicates/groups
# The longest /api/duplicates/status?after=N waits for a change of a running search before it
# answers as it is (a client asks again): short, so that a server stops without waiting long.
STATUS_WAIT_S = 5.0
STATUS_POLL_S = 0.05  # how often a waiting status request looks again
Action = Literal["trash", "move", "hardlink", "symlink"]
Rule = Literal["largest", "oldest", "newest", "shortest-path"]
JOURNAL_NAME = re.compile(r"^plan-[0-9a-f]{16}$")


class Search(BaseModel):
    """How to find the groups (as GET /api/duplicates)."""

    threshold: float | None = Field(None, ge=0, description="fc7 distance; null: calibrated")
    verify: bool = True
    min_similarity: float = Field(MIN_SIMILARITY, ge=-1, le=1)
    max_difference: float = Field(MAX_DIFFERENCE, ge=0)


def search_config(threshold: float | None, verify: bool, min_similarity: float,
                  max_difference: float) -> DuplicatesConfig:
    """The settings of a search from the server: every route that asks the same shares one
    job and its report, the pixels compared in VERIFY_WORKERS processes."""
    return DuplicatesConfig(threshold=threshold, verify=verify, min_similarity=min_similarity,
                            max_difference=max_difference, workers=VERIFY_WORKERS)


class PlanRequest(Search):
    """How to find the groups and what a plan does with them."""

    action: Action = "trash"
    move_to: str | None = Field(None, description="the folder of a move (action: move)")
    keep: list[Rule] = Field(["largest"], description="which file a group keeps, in order")
    prefer: list[str] = Field([], description="files under these folders are kept first")
    protect: list[str] = Field([], description="files under these folders are never touched")
    act_on_faint: bool = Field(False, description="act on faint copies too (kept for review "
                                                  "by default: their pixels cannot tell a "
                                                  "copy from another such picture)")


class GroupsRequest(PlanRequest):
    """A page of groups (as GET /groups), the settings and choices in the body: the page's
    chosen files (``prefer``, ``protect``) may be thousands."""

    offset: int = Field(0, ge=0)
    limit: int = Field(50, ge=1, le=MAX_GROUPS)


class Files(BaseModel):
    """Indexed images by id, or files by path."""

    ids: list[int] = []
    paths: list[str] = []


class Undo(BaseModel):
    journal: str = Field(description="a journal's name, as /apply returned it: plan-ID")


class JSONDownload(JSONResponse):
    """JSON text made by to_json, sent as it is (a JSONResponse: OpenAPI declares its schema)."""

    def render(self, content: str) -> bytes:
        return content.encode("utf-8")


def _plan_query(threshold: float | None = Query(None, ge=0), verify: bool = True,
                min_similarity: float = Query(MIN_SIMILARITY, ge=-1, le=1),
                max_difference: float = Query(MAX_DIFFERENCE, ge=0),
                action: Action = "trash", move_to: str | None = None,
                keep: list[Rule] = Query(["largest"]), prefer: list[str] = Query([]),
                protect: list[str] = Query([]), act_on_faint: bool = False) -> PlanRequest:
    return PlanRequest(threshold=threshold, verify=verify, min_similarity=min_similarity,
                       max_difference=max_difference, action=action, move_to=move_to,
                       keep=keep, prefer=prefer, protect=protect, act_on_faint=act_on_faint)


def router(service: IndexService, allow_actions: bool = False,
           move_to: str | None = None) -> APIRouter:
    """The routes; applying and undoing only with ``allow_actions``, moves only into
    ``move_to``."""
    api = APIRouter(prefix="/api/duplicates")
    _job(api, service)
    _review(api, service)
    _decisions(api, service)
    _actions(api, service, allow_actions, move_to)
    return api


def _review(api: APIRouter, service: IndexService) -> None:
    """The groups a page at a time, and the plan of them all."""

    def found(req: PlanRequest):
        """(the honoured report, the plan's rules, the collection's root)."""
        try:
            rules = plans.Rules(req.action, req.move_to, tuple(req.keep), tuple(req.prefer),
                                tuple(req.protect), req.act_on_faint)
        except plans.PlanError as e:
            raise HTTPException(400, str(e)) from None
        config = search_config(req.threshold, req.verify, req.min_similarity,
                               req.max_difference)
        return service.duplicates(config), rules, service.collection_root()

    @api.get("/groups",
             responses={200: {"model": s.GroupsPage}, **s.errors(400, 401, 409, 503)})
    async def groups(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=MAX_GROUPS),
                     req: PlanRequest = Depends(_plan_query)):
        """The groups from ``offset`` on, each as a plan has it: every file with its action,
        the reason, its size, date and resolution (no hashes: the plan download reads them).
        The search runs first if it has not (joined if it is running: see /start)."""
        return await run_in_threadpool(paged, req, offset, limit)

    @api.post("/groups",
              responses={200: {"model": s.GroupsPage}, **s.errors(400, 401, 409, 503)})
    async def groups_chosen(req: GroupsRequest):
        """As GET /groups, with the settings and the choices in the body (the review page:
        the files it keeps by choice are ``prefer`` and ``protect`` files)."""
        return await run_in_threadpool(paged, req, req.offset, req.limit)

    def paged(req: PlanRequest, offset: int, limit: int) -> dict:
        from indexes.duplicates.find import faintness

        report, rules, root = found(req)
        groups = report.groups[offset:offset + limit]
        faint_of = faintness(report.index, plans.near_paths(groups))  # a page's: few
        page = [plans.plan_group(g, rules, root, faint_of) for g in groups]
        return {"total": len(report.groups), "offset": offset, "limit": limit,
                "images": report.images, "threshold": report.threshold, "groups": page}

    @api.post("/plan", response_class=JSONDownload, responses={
        200: {"model": s.Plan, "description": "the plan, as a download (plan.json)"},
        **s.errors(400, 401, 409, 503)})
    async def plan(req: PlanRequest):
        """The plan of every group, as `retrieve duplicates --plan` writes it (a download)."""
        def make():
            report, rules, root = found(req)
            return plans.make_plan(report, rules, root, workers=VERIFY_WORKERS)

        doc = await run_in_threadpool(make)
        return JSONDownload(to_json(doc),
                            headers={"Content-Disposition": 'attachment; filename="plan.json"'})


def _job(api: APIRouter, service: IndexService) -> None:
    """The search as a background job: started once, joined, watched, cancelled."""

    def answer(version: int, job: dict | None) -> dict:
        if job is not None:
            config = job.pop("config")
            job["settings"] = {k: getattr(config, k) for k in Search.model_fields}
        return {"version": version, "job": job}

    @api.post("/start", responses={200: {"model": s.JobStatus}, **s.errors(400, 401, 409)})
    async def start(search: Search):
        """Start the search for duplicates in the background, or join the one running with
        these settings (or take its kept result): never a second one. 409 while a search
        with other settings runs."""
        config = search_config(search.threshold, search.verify, search.min_similarity,
                               search.max_difference)
        job = await run_in_threadpool(service.jobs.start, config)
        return answer(*service.jobs.status(job))

    @api.get("/status", responses={200: {"model": s.JobStatus}, **s.errors(400, 401)})
    async def status(after: int | None = Query(None, ge=0, description=(
            f"answer once the version passes this (a running search: up to {STATUS_WAIT_S:g} "
            "s), for a client that follows the progress"))):
        """The latest search: its state, stage and progress (done of total), how long it
        took, its error; ``job`` null before the first."""
        deadline = time.monotonic() + STATUS_WAIT_S
        while after is not None and time.monotonic() < deadline:  # no thread held meanwhile
            version, job = service.jobs.status()
            if version > after or job is None or job["state"] != "running":
                break
            await asyncio.sleep(STATUS_POLL_S)
        return answer(*service.jobs.status())

    @api.post("/cancel", responses={200: {"model": s.JobStatus}, **s.errors(401)})
    async def cancel():
        """Stop the running search at its next step: what it did is kept, and the next
        start goes on from there."""
        return answer(*service.jobs.status(await run_in_threadpool(service.jobs.cancel)))


def _decisions(api: APIRouter, service: IndexService) -> None:
    """"Not duplicates": listed, marked, forgotten; and what applied plans took away."""
    folder = service.store.folder

    @api.get("/decisions", responses={200: {"model": s.Decisions}, **s.errors(401)})
    async def decisions():
        """The pairs of files marked "not duplicates"."""
        rows = await run_in_threadpool(Decisions(folder).listing)
        return {"not_duplicates": [{"a": a, "b": b, "at": at} for a, b, at in rows]}

    async def paths_of(files: Files) -> list[str]:
        return [*[await run_in_threadpool(service.path, i) for i in files.ids],
                *[os.path.abspath(p) for p in files.paths]]

    @api.post("/not-duplicates", responses={200: {"model": s.Marked},
                                            **s.errors(400, 401, 404, 410)})
    async def not_duplicates(files: Files):
        """Mark the files as not duplicates of each other: every later run keeps them apart."""
        paths = await paths_of(files)
        if len(set(paths)) < 2:
            raise HTTPException(400, "give two files or more (ids or paths)")
        return {"marked": await run_in_threadpool(Decisions(folder).mark, paths)}

    @api.post("/forget-decision",
              responses={200: {"model": s.Forgotten}, **s.errors(400, 401)})
    async def forget_decision(files: Files):
        """Forget the decisions among the files (one file: every decision about it)."""
        indexed = await run_in_threadpool(service.paths, files.ids)  # gone ones too
        paths = [*indexed.values(), *[os.path.abspath(p) for p in files.paths]]
        if not paths:
            raise HTTPException(400, "give one file or more (ids or paths)")
        return {"forgotten": await run_in_threadpool(Decisions(folder).forget, paths)}

    @api.get("/gone", responses={200: {"model": s.Gone}, **s.errors(401)})
    async def gone_files():
        """The indexed files an applied plan took away, until the next build-index."""
        taken = await run_in_threadpool(service.gone)
        return {"gone": [{"id": i, **e, "message": gone.describe(e)} for i, e in taken.items()]}


def _actions(api: APIRouter, service: IndexService, allow_actions: bool,
             move_to: str | None) -> None:
    """Applying and undoing a plan, only with ``allow_actions``."""
    folder = service.store.folder

    def may_act() -> None:
        if not allow_actions:
            raise HTTPException(403, "this server only offers the plan: download it and run "
                                     "`retrieve duplicates --apply plan.json`, or start "
                                     "`retrieve serve --allow-actions`")

    def confined(plan: dict) -> None:
        """Refuse a plan that reaches past this index's files or the allowed move folder."""
        if plan["index"] != str(folder):
            raise HTTPException(403, f"a plan of another index ({plan['index']})")
        for f in actions.steps(plan):
            for path, item in [(f["path"], f.get("id"))] + [(k["path"], k.get("id"))
                                                            for k in f["kept"]]:
                if item is None or service.paths([item]).get(item) != path:
                    raise HTTPException(403, f"{path} is not an image of this index")
            if f["action"] == "move" and (move_to is None or not plans.under(f["to"], [move_to])):
                raise HTTPException(403, f"{f['to']}: this server moves files only into "
                                         f"{move_to or 'a folder given with serve --move-to'}")

    @api.post("/apply",
              responses={200: {"model": s.Outcome}, **s.errors(400, 401, 403, 409)})
    async def apply(plan: dict):
        """Do what the plan says (the JSON /plan gave, decided in the page); refused when a
        file changed since. Only with `retrieve serve --allow-actions`."""
        may_act()

        def run():
            name = f"plan-{plans.plan_id(plan)}"
            saved = folder / journal.FOLDER / f"{name}.json"  # beside its journal
            write_atomic(saved, lambda f: f.write(to_json(plan).encode("utf-8", "surrogateescape")))
            try:
                return name, actions.apply(saved, allowed=confined)
            except plans.PlanChanged as e:
                raise HTTPException(409, str(e)) from None

        name, outcome = await run_in_threadpool(run)
        return _outcome(name, outcome)

    @api.post("/undo",
              responses={200: {"model": s.Outcome}, **s.errors(400, 401, 403, 404)})
    async def undo(req: Undo):
        """Put back every file an applied plan touched. Only with --allow-actions."""
        may_act()
        if not JOURNAL_NAME.match(req.journal):
            raise HTTPException(400, "journal: a name as /apply returned it (plan-ID)")
        path = folder / journal.FOLDER / f"{req.journal}.jsonl"
        if not path.exists():
            raise HTTPException(404, f"no journal {req.journal}")
        return _outcome(req.journal, await run_in_threadpool(actions.undo, path))


def _outcome(name: str, outcome: actions.Outcome) -> dict:
    return {"journal": name, "files": outcome.files, "bytes": outcome.bytes,
            "earlier": outcome.earlier, "problems": outcome.problems}
