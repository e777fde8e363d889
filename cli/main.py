"""The `retrieve` click group; each command lives in its own module, imported only when used."""

from __future__ import annotations

import importlib
import importlib.util

import click

from cli.output import printable
from retrieval import __version__
from retrieval.errors import RetrieveError

# command name -> "module:function"; importing a command's module is deferred so that
# `retrieve query` does not pay for the training code (and `--help` stays quick).
COMMANDS = {
    "train": "cli.train:train",
    "build-index": "cli.index:build_index",
    "query": "cli.index:query",
    "info": "cli.index:info",
    "show-kernels": "cli.kernels:show_kernels",
    "evaluate": "cli.evaluate:evaluate",
    "demo": "cli.demo:demo",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, and whose errors are one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

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
    cli(prog_name="retrieve")


if __name__ == "__main__":
    main()
