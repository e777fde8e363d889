"""`retrieve duplicates`: groups of near-duplicate images in an index (thin over indexes/)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli import dup_actions
from cli.options import (default, device_option, faiss_on, index_option, nprobe_option,
                         progress_enabled)
from cli.output import printable, to_json
from indexes.config import VERIFY_WORKERS, DuplicatesConfig
from retrieval.errors import RetrieveError

OUT = click.Path(dir_okay=False, path_type=Path)


@click.command()
@index_option
@click.option("--threshold", type=click.FloatRange(min=0), metavar="DISTANCE",
              help="fc7 distance below which two images are candidates [default: calibrated "
                   "on copies the tool makes of 100 indexed images]")
@click.option("--no-verify", is_flag=True,
              help="Take fc7's candidates as they are, without comparing their pixels.")
@click.option("--min-similarity", type=click.FloatRange(-1, 1),
              default=default(DuplicatesConfig, "min_similarity"), show_default=True,
              help="How alike the pixels of a candidate pair must be, tone matched (1: the same).")
@click.option("--max-difference", type=click.FloatRange(min=0),
              default=default(DuplicatesConfig, "max_difference"), show_default=True,
              help="How different the most different part of a pair may be (0: nowhere), "
                   "so that a burst shot or an edited photo is not called a copy.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--csv", "csv_file", type=OUT, metavar="FILE.csv",
              help="Also write group,tier,path,distance,similarity,difference,kept rows.")
@click.option("--html", "html_file", type=OUT, metavar="OUT.html",
              help="Also write a page of the groups with thumbnails (self-contained).")
@click.option("--sheet", type=OUT, metavar="OUT.png",
              help="Also draw the groups into one PNG, the file to keep first in each row.")
@click.option("--workers", type=click.IntRange(min=0), default=VERIFY_WORKERS, show_default=True,
              help="Processes comparing the pixels of candidate pairs, from 1,024 pairs on "
                   "(0: this one).")
@nprobe_option
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary line.")
@dup_actions.options
def duplicates(index_dir, threshold, no_verify, min_similarity, max_difference, as_json,
               csv_file, html_file, sheet, workers, nprobe, device, quiet, **acting):
    """Find groups of near-duplicate images among everything in the index.

    Byte-identical files, then fc7 neighbours closer than the threshold whose pixels
    match everywhere: resized, recompressed, cropped, brightened copies, not burst shots.
    The file to keep comes first: the largest resolution, then the largest file. Nothing is
    moved or deleted unless a plan written with an action is applied; every applied plan
    can be undone.

    \b
    retrieve duplicates --index retrieve-index
    retrieve duplicates --json > groups.json
    retrieve duplicates --csv groups.csv --html groups.html --sheet groups.png
    retrieve duplicates --trash --keep oldest --protect originals/ --plan plan.json
    retrieve duplicates --apply plan.json
    retrieve duplicates --undo plan.json
    retrieve duplicates --not-duplicates a.jpg b.jpg
    """
    import functools
    import time

    if dup_actions.other_mode(index_dir, as_json, quiet, **acting):  # --apply, --undo, ...
        return
    plan_rules = dup_actions.rules(**acting)

    from indexes.duplicates import report as dup_report, plans
    from indexes.duplicates.decisions import honour
    from indexes.duplicates.find import find_duplicates
    from indexes.store.manifest import weights_ref
    from indexes.store.store import open_for_reading
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    start = time.perf_counter()
    config = DuplicatesConfig(threshold=threshold, verify=not no_verify,
                              min_similarity=min_similarity, max_difference=max_difference,
                              workers=workers, nprobe=nprobe)
    faiss_on(device)
    store = open_for_reading(index_dir)
    store.use_gpu()  # every indexed image is searched: worth a GPU copy
    try:
        @functools.cache
        def extractor():  # the index's weights, loaded only if a calibration needs them
            return FeatureExtractor.load(*weights_ref(store.settings),
                                         config=ExtractConfig(8, 0, device))

        report = find_duplicates(store, config, lambda paths: extractor().copy_vectors(paths),
                                 progress_enabled(quiet))
        root = (plans.collection_root(os.fsdecode(p) for p in store.items())
                if plan_rules else None)
    finally:
        store.close()
    report, settled = honour(report, store.folder)
    if plan_rules is not None:
        dup_actions.show_plan(report, plan_rules, root, acting["plan_file"], as_json, quiet,
                              progress_enabled(quiet), workers)
    elif as_json:
        click.echo(to_json(dup_report.to_json(report)))
    else:
        click.echo(dup_report.text(report, printable), nl=False)
    for path, write in ((csv_file, dup_report.to_csv), (html_file, dup_report.to_html)):
        if path is not None:
            _write(path, write(report))
    if sheet is not None and report.groups:
        from retrieval.sheet import draw_sheet

        rows = [(g.members[0].path, [(m.path, m.distance) for m in g.members[1:]])
                for g in report.groups]
        draw_sheet(rows, sheet, max(len(r) for _, r in rows), first_label="keep")
    if not quiet:
        exact = sum(g.tier == "exact" for g in report.groups)
        click.echo(f"Found {len(report.groups)} groups ({exact} of exact copies) among "
                   f"{report.images} images in {time.perf_counter() - start:.1f} s: threshold "
                   f"{report.threshold:.4g} ({report.threshold_source}), {report.candidates} "
                   f"candidate pairs{_saved(report) if config.verify else ''}, "
                   f"{report.verified} "
                   + ("with matching pixels" if config.verify else "taken unverified")
                   + _settled(settled), err=True)


def _saved(report) -> str:
    """How many pairs this run compared, where earlier runs had compared the others."""
    if report.compared >= report.candidates:
        return ""
    return f" ({report.compared} compared now, the others' pixels saved by an earlier run)"


def _settled(settled) -> str:
    """What the user's decisions and earlier actions took out of the groups."""
    said = [f"{n} {what}" for n, what in (
        (settled.apart, "set apart by your decisions"),
        (len(settled.missing), "no longer there"),
        (settled.linked, "already links to the kept file")) if n]
    return "; " + ", ".join(said) if said else ""


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise RetrieveError(f"{path}: cannot write ({e.strerror})") from None
