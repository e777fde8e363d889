"""The `retrieve` click group; each command lives in its own module, imported only when used."""

from __future__ import annotations

import gc
import importlib

import click

from cli.output import printable
from retrieval import __version__
from retrieval.errors import RetrieveError

# command name -> ("module:function", the first line of its docstring). `retrieve --help`
# lists the commands from here without importing any (tests/test_cli_imports.py checks that
# each summary is its command's own); `retrieve query` does not pay for the training code.
COMMANDS = {
    "train": ("cli.train:train",
              "Train AlexNet on labelled images with the paper's recipe (sections 4 and 5)."),
    "build-index": ("cli.index:build_index",
                    "Index every image under PATH... (recursively) by its fc7 vector."),
    "query": ("cli.index:query",
              "Find the images of the index nearest to each IMAGE (a file, or a folder of them)."),
    "info": ("cli.index:info",
             "What an index holds: images, weights, vector size, index type, size on disk."),
    "show-kernels": ("cli.kernels:show_kernels",
                     "Draw the conv1 kernels as RGB tiles in a grid (the paper's Figure 3)."),
    "duplicates": ("cli.duplicates:duplicates",
                   "Find groups of near-duplicate images among everything in the index."),
    "serve": ("cli.serve:serve",
              "Serve the index as a JSON API and a web page to browse it, until Ctrl-C."),
    "evaluate": ("cli.evaluate:evaluate",
                 "Score the index on QUERIES (images in folders named after their class)."),
    "demo": ("cli.demo:demo",
             "Run the whole tool on a small labelled data set: train, index, query, plot."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, and whose errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from COMMANDS, importing none of them."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RetrieveError as e:
            raise click.ClickException(printable(str(e))) from None  # one line
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="retrieve")
def cli() -> None:
    """Content-based image retrieval with AlexNet fc7 features and FAISS.

    Every image becomes the 4096 activations of AlexNet's last hidden layer (fc7); images
    whose vectors are close in Euclidean distance look alike (Krizhevsky, Sutskever and
    Hinton, NIPS 2012, section 6.1).

    \b
    retrieve demo                         # the whole tool on a small data set, offline
    retrieve build-index photos/          # index a folder of photos
    retrieve query img.jpg -k 10          # its 10 most similar images
    retrieve show-kernels                 # the conv1 filters (the paper's Figure 3)
    retrieve train my-labelled-photos/    # train your own AlexNet
    """


def main() -> None:
    try:
        cli(prog_name="retrieve")
    finally:
        # Python's last garbage collections at exit walk every object torch and torchvision
        # made at import (1.4 s of CPU after a build-index of 20 images); frozen, they are
        # skipped (0.45 s): files and the index are closed by then, by `with` and `finally`.
        gc.freeze()


if __name__ == "__main__":
    main()
