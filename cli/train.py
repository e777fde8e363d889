"""`retrieve train`: parse the options into a TrainConfig, train, print one summary line."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import default, device_option, progress_enabled, quiet_option
from retrieval.config import FASHION_MNIST, INIT_SCHEMES, PIXELS, TrainConfig


def _default(name: str):
    return default(TrainConfig, name)


class DataArg(click.ParamType):
    """A folder of class sub-folders, or the name ``fashion-mnist``."""

    name = "DATA"

    def convert(self, value, param, ctx):
        if value == FASHION_MNIST:
            return value
        if not Path(value).is_dir():
            self.fail(f"{value!r} is neither a folder nor 'fashion-mnist'", param, ctx)
        return value


@click.command()
@click.argument("data", type=DataArg())
@click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Validation folder with the same class sub-folders (default: a split of DATA; "
                   "for fashion-mnist its test set).")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=_default("val_split"), show_default=True,
              help="Share of each class of DATA set aside for validation when --val is not given.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=_default("out"), show_default=True,
              help="Folder for checkpoint.pt, best.pt, metrics.jsonl and curves.png.")
@click.option("--epochs", type=click.IntRange(min=1), default=_default("epochs"), show_default=True,
              help="Passes over the training set (section 5: about 90).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_default("batch_size"),
              show_default=True, help="Images per SGD step (per GPU under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              show_default="0.01 x sqrt(batch / 128), the batch of all processes together",
              help="Initial learning rate, divided by 10 when the validation error stops "
                   "improving.")
@click.option("--warmup", "warmup_epochs", type=click.FloatRange(min=0), metavar="EPOCHS",
              show_default="1, or 0 with --init-scheme paper",
              help="Raise the learning rate linearly from 0 to --lr over this many epochs.")
@click.option("--image-size", type=click.IntRange(min=64), default=_default("image_size"),
              show_default=True,
              help="Side of the square crops the network sees (section 4.1: 224).")
@click.option("--groups", type=click.Choice(["1", "2"]), default=str(_default("groups")),
              show_default=True,
              help="2: the paper's two-GPU connectivity in conv2, conv4 and conv5.")
@click.option("--width", type=click.FloatRange(0, 4, min_open=True), default=_default("width"),
              show_default=True,
              help="Multiply every layer's channels and fc6/fc7's units (0.25: a 16x smaller "
                   "network, 1024-d fc7, for small data sets or a CPU).")
@click.option("--workers", type=click.IntRange(min=0), default=_default("workers"),
              show_default="one per core with CUDA (shared by torchrun's processes), 0 on the CPU",
              help="DataLoader worker processes.")
@device_option
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in an OUT that already holds a run, replacing its files.")
@click.option("--seed", type=int, default=_default("seed"), show_default=True,
              help="Seed of the split, initialisation, shuffling and augmentation.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding Fashion-MNIST's files (default: Debian's copy).")
@click.option("--init", "init", metavar="imagenet|CKPT",
              help="Start from these weights with a new fc8 (transfer learning) instead of "
                   "from scratch.")
@click.option("--freeze-features", is_flag=True,
              help="Train only the fully connected layers (with --init).")
@click.option("--ten-crop", is_flag=True,
              help="Validate with the paper's ten-crop test (softmax averaged over 10 crops).")
@click.option("--no-flip", is_flag=True, help="No random horizontal flips.")
@click.option("--no-pca-lighting", is_flag=True, help="No PCA colour augmentation.")
@click.option("--no-random-crop", is_flag=True, help="Centre crops instead of random ones.")
@click.option("--no-mean-subtraction", is_flag=True,
              help="Feed pixels in [0, 1] without subtracting the training mean.")
@click.option("--init-scheme", type=click.Choice(INIT_SCHEMES), default=_default("init_scheme"),
              show_default=True,
              help="Initialisation from scratch: Kaiming-normal, or the paper's recipe (section "
                   "5's N(0, 0.01) weights and biases of 1, raw pixels, no warm-up).")
@click.option("--pixels", type=click.Choice(PIXELS),
              show_default="raw with --init-scheme paper, else standardised",
              help="What the network is fed: standardised (mean 0, std 1) or raw (0-255 minus "
                   "the mean, the paper's section 2).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop after the epoch during which this many minutes have passed.")
@click.option("--limit-per-class", type=click.IntRange(min=1),
              help="Use at most this many images of each class (for fashion-mnist, of its "
                   "training and of its test set).")
@quiet_option
def train(data, val, val_split, out, epochs, batch_size, lr, warmup_epochs, image_size, groups, width, workers,
          device, resume, overwrite, seed, data_root, init, freeze_features, ten_crop, no_flip,
          no_pca_lighting, no_random_crop, no_mean_subtraction, init_scheme, pixels, max_minutes,
          limit_per_class, quiet):
    """Train AlexNet on labelled images with the paper's recipe (sections 4 and 5).

    DATA is a folder with one sub-folder of images per class, or `fashion-mnist`.

    \b
    retrieve train photos/ --epochs 30 --out runs/photos
    retrieve train fashion-mnist --image-size 64 --epochs 10 --init-scheme kaiming
    retrieve train photos/ --init imagenet --freeze-features --epochs 5
    retrieve train photos/ --out runs/photos --resume
    """
    from retrieval.errors import TrainingInterrupted
    from retrieval.train import train as run

    if freeze_features and init is None:
        raise click.UsageError("--freeze-features needs --init imagenet|CKPT (features to keep)")
    config = TrainConfig(
        data=data, out=out, val=val, val_split=val_split, epochs=epochs, batch_size=batch_size,
        lr=lr, warmup_epochs=warmup_epochs, image_size=image_size, groups=int(groups), width=width, workers=workers,
        device=device, resume=resume, overwrite=overwrite, seed=seed, data_root=data_root,
        init=init, freeze_features=freeze_features, ten_crop=ten_crop, flip=not no_flip,
        pca_lighting=not no_pca_lighting, random_crop=not no_random_crop,
        mean_subtraction=not no_mean_subtraction, init_scheme=init_scheme, pixels=pixels,
        max_minutes=max_minutes, limit_per_class=limit_per_class,
        progress=progress_enabled(quiet))
    try:
        result = run(config)
    except TrainingInterrupted as e:
        click.echo(str(e), err=True)
        click.get_current_context().exit(130)
    if result.is_main:
        click.echo(result.summary())
