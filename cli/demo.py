"""`retrieve demo`: the whole tool on a small data set (thin over cli.demo_steps)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import default, device_option, faiss_on, progress_enabled, quiet_option
from retrieval.config import DEMO_DATA, DemoConfig


def _default(name: str):
    return default(DemoConfig, name)


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=_default("out"),
              show_default=True, help="Folder for the data, weights, index and pictures.")
@click.option("--data", type=click.Choice(DEMO_DATA),
              default=_default("data"), show_default=True,
              help="auto: Fashion-MNIST where its files can be found or downloaded, else shapes "
                   "(drawn by the package itself).")
@click.option("--minutes", type=click.FloatRange(min=0.05), default=_default("minutes"),
              show_default=True,
              help="Time budget; training gets about 70% of it.")
@click.option("--per-class", type=click.IntRange(min=5), default=_default("per_class"),
              show_default=True,
              help="Training (and indexed) images per class.")
@click.option("--queries-per-class", type=click.IntRange(min=1),
              default=_default("queries_per_class"), show_default=True,
              help="Held-out query images per class.")
@device_option
@quiet_option
def demo(out, data, minutes, per_class, queries_per_class, device, quiet):
    """Run the whole tool on a small labelled data set: train, index, query, plot.

    Needs no network and no GPU (uses one when present). Prints what was trained, how well
    fc7 retrieves compared with raw pixels, and where every file went.

    \b
    retrieve demo
    retrieve demo --data shapes --minutes 1 --out /tmp/demo
    """
    from cli.demo_steps import format_summary, run_demo

    faiss_on(device)
    config = DemoConfig(out=out, data=data, minutes=minutes, per_class=per_class,
                        queries_per_class=queries_per_class, device=device,
                        progress=progress_enabled(quiet))
    click.echo(format_summary(run_demo(config), out))
