"""The acting side of `retrieve duplicates`: plans, --apply, --undo and "not duplicates"
decisions (thin over indexes/plans, actions and decisions)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.output import printable, to_json
from retrieval.errors import RetrieveError

PLAN = click.Path(dir_okay=False, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
KEEP_RULES = ["largest", "oldest", "newest", "shortest-path"]  # indexes.duplicates.plans.KEEP_RULES
WHAT_UNDO_DID = {"trash": "back from the trash", "move": "moved back",
                 "hardlink": "back in place of their hard links",
                 "symlink": "back in place of their symbolic links"}
WHAT_APPLY_DID = {"trash": "to the trash", "move": "moved", "hardlink": "replaced by hard links",
                  "symlink": "replaced by symbolic links"}
ACTION_NEEDED = ("say what becomes of the copies: --trash, --move-to DIR, --hardlink or "
                 "--symlink (nothing happens without one)")


def options(f):
    """The options of plans, applying, undoing and decisions, and the FILES argument."""
    decorators = [
        click.option("--plan", "plan_file", type=PLAN, metavar="PLAN.json",
                     help="Write what would happen, file by file, to PLAN.json; nothing is "
                          "touched. Needs an action."),
        click.option("--trash", "action", flag_value="trash",
                     help="Action: the copies go to the system trash."),
        click.option("--move-to", type=click.Path(file_okay=False, path_type=Path),
                     metavar="DIR", help="Action: the copies move to DIR, keeping their "
                                         "paths below the indexed folder."),
        click.option("--hardlink", "action", flag_value="hardlink",
                     help="Action: each copy becomes a hard link to the kept file."),
        click.option("--symlink", "action", flag_value="symlink",
                     help="Action: each copy becomes a symbolic link to the kept file."),
        click.option("--keep", "keep_rules", type=click.Choice(KEEP_RULES), multiple=True,
                     help="Which file a group keeps, rules in order (repeat): largest "
                          "resolution then file [default], oldest, newest, shortest-path."),
        click.option("--prefer", type=click.Path(path_type=Path), multiple=True,
                     metavar="DIR", help="Files under DIR (or DIR itself) are kept before "
                                         "any rule (repeat: the first given wins)."),
        click.option("--protect", type=click.Path(path_type=Path), multiple=True,
                     metavar="DIR", help="Files under DIR are never touched; a group "
                                         "all inside is only reported (repeat)."),
        click.option("--act-on-faint", is_flag=True,
                     help="Act on faint copies too (of a plain colour, a blank page, a "
                          "smooth gradient, a faint paper): kept for review by default, as "
                          "pixels cannot tell such a copy from another such picture."),
        click.option("--apply", "apply_file", type=EXISTING_FILE, metavar="PLAN.json",
                     help="Do what PLAN.json says, and nothing else; refused if its files "
                          "changed. A killed run is completed by running it again."),
        click.option("--undo", "undo_file", type=EXISTING_FILE, metavar="JOURNAL|PLAN",
                     help="Put back every file an applied plan touched (its journal, or "
                          "the plan itself)."),
        click.option("--not-duplicates", "mark", is_flag=True,
                     help="Remember that FILES are not duplicates of each other."),
        click.option("--forget-decision", "forget", is_flag=True,
                     help="Forget the decisions among FILES (one file: all about it)."),
        click.option("--decisions", "list_decisions", is_flag=True,
                     help="List the \"not duplicates\" decisions."),
        click.argument("files", nargs=-1, type=click.Path(path_type=Path)),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def other_mode(index_dir: Path, as_json: bool, quiet: bool, apply_file, undo_file, mark,
               forget, list_decisions, files, **plan_options) -> bool:
    """Run --apply, --undo or a decision command if one is asked for: whether one was."""
    planning = any(plan_options.values())
    modes = [m for m, on in (("--apply", apply_file), ("--undo", undo_file),
                             ("--not-duplicates", mark), ("--forget-decision", forget),
                             ("--decisions", list_decisions)) if on]
    if len(modes) > 1:
        raise click.UsageError(f"{modes[0]} and {modes[1]}: one at a time")
    if files and not (mark or forget):
        raise click.UsageError("FILES are for --not-duplicates and --forget-decision")
    if not modes:
        return False
    if planning:
        raise click.UsageError(f"{modes[0]} does not make a plan: leave out the plan options")
    if apply_file or undo_file:
        _apply_or_undo(apply_file, undo_file, as_json, quiet)
    else:
        _decide(index_dir, mark, forget, files, as_json)
    return True


def _apply_or_undo(apply_file, undo_file, as_json: bool, quiet: bool) -> None:
    from cli.options import progress_enabled
    from indexes.duplicates import actions

    progress = progress_enabled(quiet)
    outcome = (actions.apply(apply_file, progress) if apply_file
               else actions.undo(undo_file, progress))
    if as_json:
        click.echo(to_json({"journal": str(outcome.journal), "files": outcome.files,
                            "bytes": outcome.bytes, "earlier": outcome.earlier,
                            "problems": outcome.problems}))
    for problem in outcome.problems:
        click.echo(printable(problem), err=True)
    if not quiet:
        said = WHAT_APPLY_DID if apply_file else WHAT_UNDO_DID
        done = (", ".join(f"{_files(n)} {said[a]}" for a, n in outcome.files.items())
                or "nothing to do")
        earlier = f" ({outcome.earlier} done by an earlier run)" if outcome.earlier else ""
        if apply_file:
            click.echo(f"Applied {printable(str(apply_file))}: {done} ({outcome.bytes / 1e6:.2f}"
                       f" MB){earlier}. Journal: {printable(str(outcome.journal))} (undo: "
                       f"retrieve duplicates --undo {printable(str(apply_file))})", err=True)
        else:
            click.echo(f"Undid {printable(str(outcome.journal))}: {done}.", err=True)
    if outcome.problems:
        raise click.ClickException(f"{_files(len(outcome.problems))} could not be "
                                   f"{'done' if apply_file else 'put back'} (above)")


def _decide(index_dir: Path, mark: bool, forget: bool, files, as_json: bool) -> None:
    from indexes.duplicates.decisions import Decisions
    from indexes.store.files import DATABASE

    if not (index_dir / DATABASE).is_file():
        raise RetrieveError(f"{index_dir}: no index here")
    decisions = Decisions(index_dir)
    paths = [os.path.abspath(p) for p in files]
    if mark:
        if len(set(paths)) < 2:
            raise click.UsageError("--not-duplicates needs two files or more")
        missing = next((p for p in paths if not os.path.isfile(p)), None)
        if missing is not None:
            raise RetrieveError(f"{missing}: no such file")
        n = decisions.mark(paths)
        click.echo(f"{n} new {'pair' if n == 1 else 'pairs'} marked as not duplicates "
                   f"({printable(str(decisions.path))}).", err=True)
    elif forget:
        if not paths:
            raise click.UsageError("--forget-decision needs one file or more")
        n = decisions.forget(paths)
        click.echo(f"{n} {'decision' if n == 1 else 'decisions'} forgotten.", err=True)
    else:
        rows = decisions.listing()
        if as_json:
            click.echo(to_json({"not_duplicates": [{"a": a, "b": b, "at": at}
                                                   for a, b, at in rows]}))
        else:
            for a, b, _ in rows:
                click.echo(f"{printable(a)}  {printable(b)}")


def rules(plan_file, action, move_to, keep_rules, prefer, protect, act_on_faint, **_):
    """The plan's Rules, or None when no plan is asked for (UsageError for a half-asked one)."""
    from indexes.duplicates.plans import PlanError, Rules

    if action is not None and move_to is not None:
        raise click.UsageError(f"--{action} and --move-to: one action at a time")
    action = "move" if move_to is not None else action
    if action is None:
        asked = next((name for name, on in (("--plan", plan_file), ("--keep", keep_rules),
                                             ("--prefer", prefer), ("--protect", protect),
                                             ("--act-on-faint", act_on_faint)) if on), None)
        if asked is not None:
            raise click.UsageError(f"{asked}: {ACTION_NEEDED}")
        return None
    try:
        return Rules(action, move_to and str(move_to), tuple(keep_rules) or ("largest",),
                     tuple(map(str, prefer)), tuple(map(str, protect)), act_on_faint)
    except PlanError as e:
        raise click.UsageError(str(e)) from None


def show_plan(report, rules, root: str, plan_file, as_json: bool, quiet: bool,
              progress: bool, workers: int = 0) -> None:
    """Make the plan of ``report``, print it file by file (or as JSON) and write it."""
    from indexes.duplicates import plans
    from retrieval.atomic import write_atomic

    if rules.move_to is not None and plans.under(rules.move_to, [root]):
        click.echo(f"warning: --move-to {printable(rules.move_to)} is inside the indexed "
                   f"folder {printable(root)}: build-index would index the moved copies "
                   "again", err=True)
    plan = plans.make_plan(report, rules, root, progress, workers)
    text = to_json(plan)
    click.echo(text if as_json else plans.text(plan, printable), nl=as_json)
    if plan_file is not None:
        try:
            write_atomic(plan_file, lambda f: f.write(text.encode("utf-8", "surrogateescape")))
        except OSError as e:
            raise RetrieveError(f"{plan_file}: cannot write ({e.strerror})") from None
    if quiet:
        return
    counts = plans.summary(plan)
    acted = counts[rules.action]
    what = WHAT_APPLY_DID[rules.action]
    where = (f"written to {printable(str(plan_file))}, nothing done yet: apply it with "
             f"`retrieve duplicates --apply {printable(str(plan_file))}`" if plan_file
             else "shown only, nothing done: add --plan PLAN.json to write it")
    review = (f" ({counts['review']} of them faint copies kept for review: --act-on-faint "
              "acts on them)" if counts["review"] else "")
    click.echo(f"Plan: {_files(acted)} {what} ({counts['bytes'] / 1e6:.2f} MB), "
               f"{counts['keep']} kept{review}; {where}.", err=True)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
