"""`retrieve evaluate`: retrieval quality of an index on labelled queries (thin over indexes/)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import click

from cli.options import (EXISTING, default, device_option, faiss_on, index_option,
                         nprobe_option, progress_enabled, query_batch_size_option, quiet_option)
from cli.output import printable
from indexes.config import EvalConfig
from retrieval.config import ExtractConfig
from retrieval.errors import RetrieveError


@click.command()
@click.argument("queries", nargs=-1, required=True, type=EXISTING)
@index_option
@click.option("-k", "k", type=click.IntRange(min=1), default=default(EvalConfig, "k"),
              show_default=True,
              help="Cut-off of precision@k and recall@k.")
@click.option("--baseline", type=click.Choice(["pixels"]),
              help="Also score raw pixels (16x16, Euclidean, exact) and show the ratio.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.png",
              help="Draw the precision-recall curves into one PNG.")
@click.option("--map-at", type=click.IntRange(min=1), metavar="N",
              help="mAP over the first N results (default: the whole ranking of the index).")
@click.option("--per-class", is_flag=True, help="Also a table of the figures of each class.")
@click.option("--ground-truth", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE.csv",
              help="Near-duplicate search: CSV rows `query path,relevant path` instead of labels.")
@nprobe_option
@device_option
@query_batch_size_option
@quiet_option
def evaluate(queries, index_dir, k, baseline, as_json, plot, map_at, per_class, ground_truth,
             nprobe, device, batch_size, quiet):
    """Score the index on QUERIES (images in folders named after their class).

    An image's label is its parent folder's name, for the queries and the indexed images;
    a result is relevant when it has the query's label. A query that is itself indexed
    is left out of its own results. Reports mAP, precision@k, recall@k and top-1.

    \b
    retrieve evaluate test-images/ --baseline pixels
    retrieve evaluate test-images/ --map-at 100 --per-class --json
    retrieve evaluate copies/ --ground-truth pairs.csv -k 5
    """
    from indexes.evaluation import report as eval_report
    from indexes.evaluation.evaluate import evaluate as run
    from indexes.evaluation.evaluate import load_ground_truth
    from indexes.search.searcher import Searcher
    from retrieval.features import FeatureExtractor
    from retrieval.walk import find_images

    paths = [str(p) for p in find_images(queries)]
    if not paths:
        raise RetrieveError(f"no images in {', '.join(map(str, queries))}")
    truth = load_ground_truth(ground_truth) if ground_truth is not None else None
    faiss_on(device)
    pixels = None
    if baseline == "pixels":
        from retrieval.pixels import pixel_vectors as pixels
    load = partial(FeatureExtractor.load, config=ExtractConfig.for_queries(
        len(paths), batch_size, device), progress=progress_enabled(quiet))
    config = EvalConfig(k=k, map_at=map_at, per_class=per_class, nprobe=nprobe)
    with Searcher.open(index_dir, load) as searcher:
        searcher.store.use_gpu()  # every query searches the whole ranking: worth a GPU copy
        report = run(searcher.store, paths, searcher.embed, config, pixels=pixels,
                     ground_truth=truth)
    for path, reason in report.skipped:
        click.echo(printable(f"skipped {path}: {reason}"), err=True)
    if report.absent_labels:
        click.echo(f"warning: no indexed image has the label of {len(report.absent_labels)} "
                   f"query folders ({', '.join(report.absent_labels)})", err=True)
    if as_json:
        click.echo(json.dumps(eval_report.to_json(report, index_dir), indent=2))
    else:
        click.echo("\n".join(eval_report.text(report)))
        if per_class:
            click.echo("\n" + "\n".join(eval_report.class_lines(report)))
    if plot is not None:
        click.echo(f"Wrote {eval_report.plot_curves(report, plot)}", err=True)
