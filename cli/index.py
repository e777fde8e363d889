"""`retrieve build-index`, `retrieve query` and `retrieve info`: thin commands over indexes/."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import click

from cli.building import Build
from cli.options import (EXISTING, default, device_option, faiss_on, index_option,
                         nprobe_option, query_batch_size_option, quiet_option)
from cli.output import printable, to_json
from indexes.config import COMMIT_EVERY, DEFAULT_FACTORY, DEFAULT_K, BuildConfig
from retrieval.config import EXTRACT_WORKERS, RAW_CHOICES, ExtractConfig
from retrieval.errors import RetrieveError

RAW_AS = {"jpeg": "the JPEG", "raw": "the RAW file", "both": "both files"}


@click.command("build-index")
@click.argument("paths", nargs=-1, required=True, type=EXISTING)
@click.option("--weights", metavar="CKPT|imagenet",
              show_default="the index's own, else $RETRIEVE_WEIGHTS, else imagenet",
              help="A checkpoint from `retrieve train`, or `imagenet` for torchvision's "
                   "ImageNet-trained AlexNet.")
@index_option
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default(ExtractConfig, "batch_size"), show_default=True,
              help="Images per forward pass (memory use grows with it).")
@click.option("--workers", type=click.IntRange(min=0), default=default(ExtractConfig, "workers"),
              show_default=f"{EXTRACT_WORKERS} on the CPU, one per core with a GPU",
              help="Processes decoding images while the network runs (0: in this process).")
@click.option("--gpu-decode", is_flag=True,
              help="Decode JPEG files on the GPU (nvJPEG) and resize them there; vectors differ "
                   "slightly from the CPU decode's.")
@click.option("--factory", metavar="FAISS_FACTORY",
              show_default=f"the index's own, else {DEFAULT_FACTORY}",
              help="FAISS index type, e.g. Flat (exact), IVF1024,PQ64 (compressed), HNSW32.")
@click.option("--normalize/--no-normalize", default=None,
              show_default="the index's own, else no",
              help="L2-normalise every vector (and each query) before indexing.")
@click.option("--on-disk", "on_disk", is_flag=True, default=None,
              help="IVF indexes: keep the inverted lists in a memory-mapped file, grown in "
                   "place round by round (for indexes larger than memory). Kept by re-runs.")
@click.option("--commit-every", type=click.IntRange(min=1), default=COMMIT_EVERY,
              show_default=True, metavar="N",
              help="Extract N images, then commit them as a generation, and so on: bounds "
                   "the staged vectors (disk) and the work a killed build loses.")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Leave out the files and folders GLOB matches (gitignore syntax, relative to "
                   "each PATH; repeatable). Kept by re-runs; --exclude '' forgets them. A "
                   ".retrieveignore file in an indexed folder adds patterns of its own.")
@click.option("--raw", type=click.Choice(RAW_CHOICES), show_default="the index's own, else jpeg",
              help="A RAW file with a same-name JPEG or HEIC beside it: index the JPEG (the "
                   "camera's rendering), the RAW file, or both.")
@click.option("--watch", is_flag=True,
              help="After the build, follow PATH... and commit new, changed and removed files "
                   "in small generations as they come, until Ctrl-C.")
@click.option("--poll", type=click.FloatRange(min=0.05), metavar="SECONDS",
              help="--watch: look at the folders every SECONDS instead of waiting for file "
                   "events (network mounts; chosen by itself on NFS, SMB and SSHFS).")
@device_option
@click.option("--rebuild", is_flag=True,
              help="Replace an index made with other weights, factory or normalisation.")
@click.option("--errors", "errors_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the skipped files here, one `path<TAB>reason` a line.")
@quiet_option
def build_index(paths, weights, index_dir, batch_size, workers, gpu_decode, factory, normalize,
                on_disk, commit_every, exclude, raw, watch, poll, device, rebuild, errors_file,
                quiet):
    """Index every image under PATH... (recursively) by its fc7 vector.

    Runs again: only new or changed files go through the network, vanished ones leave
    the index. A build that was interrupted carries on where it stopped.

    \b
    retrieve build-index photos/ --weights runs/alexnet/best.pt
    retrieve build-index photos/ --exclude 'Screenshots/' --exclude '*.gif' --raw raw
    retrieve build-index photos/ --watch    # and keep following photos/ until Ctrl-C
    retrieve build-index photos/ more/ --factory 'IVF1024,PQ64,Refine(SQ8)' --index big-index
    retrieve build-index photos/ --factory PCA256,IVF4096,SQ8 --on-disk --index huge-index
    torchrun --nproc-per-node 8 -m cli build-index photos/ --index big-index
    """
    from retrieval.distributed import Team
    from retrieval.weights import resolve_device

    if poll is not None and not watch:
        raise click.UsageError("--poll goes with --watch")
    faiss_on(device)
    team = Team.join(resolve_device(device))  # None unless started by torchrun
    if team is not None and watch:
        team.leave()
        raise click.UsageError("--watch runs in one process, not under torchrun")
    build = Build(paths, index_dir, BuildConfig(factory, normalize, on_disk,
                                                tuple(exclude) or None, raw, commit_every),
                  errors_file, quiet)
    try:
        build.prepare(weights, ExtractConfig(batch_size, workers, device, gpu_decode), team)
        if watch:
            return build.watch(poll, rebuild)
        report = build.run(rebuild, team)
    except RetrieveError as e:
        if team is None:
            raise
        raise RetrieveError(f"build-index rank {team.rank} of {team.size}: {e}") from None
    finally:
        if team is not None:
            team.leave()
    if report is not None:  # None on a rank other than 0: rank 0 reports for all
        build.summary(report)


@click.command()
@click.argument("images", nargs=-1, required=True, type=EXISTING)
@index_option
@click.option("-k", "k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
              help="How many neighbours to show per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), metavar="OUT.png",
              help="Draw queries and neighbours into one PNG (the paper's Figure 4).")
@click.option("--max-distance", type=click.FloatRange(min=0), metavar="D",
              help="Only neighbours this close (e.g. the threshold `retrieve duplicates` "
                   "prints: which indexed images are copies of IMAGE).")
@nprobe_option
@device_option
@query_batch_size_option
def query(images, index_dir, k, as_json, sheet, nprobe, max_distance, device, batch_size):
    """Find the images of the index nearest to each IMAGE (a file, or a folder of them).

    Distances are Euclidean between fc7 vectors (0: the same image).

    \b
    retrieve query cat.jpg -k 5
    retrieve query queries/ --json > results.json
    retrieve query cat.jpg dog.jpg --sheet neighbours.png
    retrieve query cat.jpg --max-distance 12.5    # its copies in the index
    """
    from indexes.search.searcher import Searcher
    from retrieval.onnx_fc7 import load_extractor
    from retrieval.walk import find_images

    paths = [str(p) for p in find_images(images)]
    if not paths:
        raise RetrieveError(f"no images in {', '.join(map(str, images))}")
    faiss_on(device)
    config = ExtractConfig.for_queries(len(paths), batch_size, device)
    # one batch on the CPU: the ONNX export build-index wrote, without torch (onnx_fc7)
    with Searcher.open(index_dir, partial(load_extractor, index_dir, config=config)) as searcher:
        rows, failed = searcher.query(paths, k, nprobe, max_distance)
        folder = searcher.store.folder
    if len(paths) == 1 and failed:
        raise RetrieveError(f"{failed[0][0]}: {failed[0][1]}")
    for path, reason in failed:
        click.echo(printable(f"skipped {path}: {reason}"), err=True)
    if not rows:
        raise RetrieveError("none of the query images could be read")
    _print_results(folder, k, rows, as_json)
    if sheet is not None:
        from retrieval.sheet import draw_sheet

        click.echo(f"Wrote {draw_sheet(rows, sheet, k)}", err=True)


def _print_results(folder: Path, k: int, rows, as_json: bool) -> None:
    if as_json:
        doc = {"index": str(folder), "k": k, "queries": [
            {"query": os.path.abspath(q), "results": [
                {"rank": r, "path": p, "distance": d} for r, (p, d) in enumerate(res, 1)]}
            for q, res in rows]}
        click.echo(to_json(doc))
        return
    for n, (q, results) in enumerate(rows):
        click.echo(("\n" if n else "") + printable(os.path.abspath(q)))
        for rank, (path, distance) in enumerate(results, 1):
            click.echo(f"{rank:>4}  {distance:10.4f}  {printable(path)}")


@click.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="The manifest and sizes as JSON.")
def info(index_dir, as_json):
    """What an index holds: images, weights, vector size, index type, size on disk.

    \b
    retrieve info --index retrieve-index
    """
    from indexes.store.store import describe, open_for_reading

    store = open_for_reading(index_dir)
    try:
        facts = describe(store)
    finally:
        store.close()
    if as_json:
        click.echo(to_json(facts, sort_keys=True))
        return
    click.echo(f"Index:        {printable(facts['index'])}\n"
               f"Images:       {facts['count']}\n"
               f"Weights:      {facts['weights']} (sha256 {facts['sha256'][:16]}...)\n"
               f"Vectors:      {facts['layer']}, {facts['dim']} dimensions"
               f"{', L2-normalised' if facts['normalize'] else ''}\n"
               f"Index type:   {facts['factory']} ({facts['index_file']}"
               f"{', inverted lists on disk' if facts.get('on_disk') else ''})\n"
               f"Size on disk: {facts['size_on_disk'] / 2**20:.1f} MiB\n"
               f"Last build:   {facts['built_at']}")
    if facts.get("raw"):  # what the walk takes (an index built before --exclude, --raw: nothing)
        excluded = ", ".join(map(printable, facts.get("exclude") or ())) or "nothing"
        click.echo(f"Files:        RAW+JPEG pairs as {RAW_AS[facts['raw']]}; --exclude {excluded}")
