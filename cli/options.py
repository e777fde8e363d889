"""Option bundles shared by several commands, and the defaults they take from the dataclasses.

Imports neither torch nor FAISS: `retrieve COMMAND --help` stays instant.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from indexes.config import DEFAULT_NPROBE
from retrieval.config import IMAGENET, ExtractConfig

DEFAULT_INDEX = "retrieve-index"
QUERY_BATCH_SIZE = 32  # query images per forward pass (fewer than a build's: lower latency)
EXISTING = click.Path(exists=True, path_type=Path)


def default(config: type, name: str):
    """The default of field ``name`` of the dataclass ``config``: each default lives once."""
    for f in dataclasses.fields(config):
        if f.name == name:
            return f.default
    raise KeyError(f"{config.__name__} has no field {name!r}")


def weights_option(f):
    return click.option(
        "--weights", default=lambda: os.environ.get("RETRIEVE_WEIGHTS", IMAGENET),
        show_default="imagenet, or $RETRIEVE_WEIGHTS", metavar="CKPT|imagenet",
        help="A checkpoint from `retrieve train`, or `imagenet` for torchvision's "
             "ImageNet-trained AlexNet.")(f)


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:N (the GPU number)."""

    name = "auto|cpu|cuda[:N]"

    def convert(self, value, param, ctx):
        value = str(value).strip().lower()
        number = value.split(":", 1)[1] if value.startswith("cuda:") else "0"
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and number.isdigit()):
            return value
        self.fail(f"{value!r} is not auto, cpu, cuda or cuda:N", param, ctx)


def device_option(f):
    return click.option(
        "--device", type=Device(), default=default(ExtractConfig, "device"), show_default=True,
        help="Where the network and FAISS run: auto picks the GPU when there is one; cuda:N "
             "a given GPU; cpu keeps both off the GPU.")(f)


def faiss_on(device: str) -> None:
    """FAISS runs where --device says (``indexes.store.gpu``): imported only by commands using it."""
    from indexes.store import gpu

    gpu.configure(device)


def index_option(f):
    return click.option(
        "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("RETRIEVE_INDEX", DEFAULT_INDEX),
        show_default="retrieve-index, or $RETRIEVE_INDEX",
        help="The index directory.")(f)


def nprobe_option(f):
    return click.option(
        "--nprobe", type=click.IntRange(min=1),
        help="IVF indexes: inverted lists visited per query (more: slower, more exact) "
             f"[default: {DEFAULT_NPROBE}, saved in the index]")(f)


def query_batch_size_option(f):
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=QUERY_BATCH_SIZE, show_default=True,
        help="Query images per forward pass.")(f)


def quiet_option(f):
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress bars (they are also off when stderr is not a terminal).")(f)


def progress_enabled(quiet: bool) -> bool:
    """tqdm bars on stderr only for a person watching a terminal."""
    return not quiet and sys.stderr.isatty()

