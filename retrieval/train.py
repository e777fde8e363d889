"""`retrieve train`: the paper's training recipe (Krizhevsky et al. 2012, sections 4 and 5) on
a folder of labelled images or Fashion-MNIST, with resumable checkpoints, on CPU, one GPU or
several (torchrun)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed as D
from .config import FASHION_MNIST, LR_FACTOR, RAW_PIXEL_SCALE, TrainConfig, loader_workers
from .curves import Curves, write_metrics
from .data import (FashionMNISTSet, ImageFolderSet, LabelledImages, TransformedSubset,
                   collate_skipping, pixel_statistics, split_indices)
from .engine import EvalStats, evaluate, train_one_epoch
from .errors import DataError, TrainingError, TrainingInterrupted
from .model import AlexNet, ModelConfig
from .state import Progress, restore, rng_state, seed_everything
from .transforms import Preprocess, create_transform, ten_crop_transform
from .weights import load_weights, read_checkpoint, resolve_device, save_checkpoint

__all__ = ["TrainConfig", "TrainResult", "train"]

# A run still at chance after STALL_EPOCHS epochs gets one warning: its validation top-1 error
# within STALL_MARGIN of what always answering the largest class would score (or, with no
# validation figure, its training loss within STALL_LOSS, relative, of log(classes): the loss
# of a constant prediction).
STALL_EPOCHS = 3
STALL_MARGIN = 0.02
STALL_LOSS = 0.02


@dataclass
class TrainResult:
    epochs_run: int  # epochs completed in total, including those before a resume
    best_path: Path
    last_path: Path
    metrics: list[dict]
    best_val_top1_error: float
    best_epoch: int
    skipped: int  # distinct unreadable files met in this run
    seconds: float  # wall time of this run
    is_main: bool = True  # False in the other processes of a torchrun run (they print nothing)

    def summary(self) -> str:
        last = self.metrics[-1]["val_top1_error"] if self.metrics else math.nan
        epochs = f"{self.epochs_run} epoch{'s' if self.epochs_run != 1 else ''}"
        return (f"Trained {epochs} in {self.seconds:.0f} s: val top-1 error "
                f"{last:.3f} (best {self.best_val_top1_error:.3f} at epoch {self.best_epoch}); "
                f"best weights {self.best_path}")


@dataclass
class Data:
    classes: list[str]
    train: LabelledImages
    train_idx: list[int]
    val: LabelledImages
    val_idx: list[int]


def load_data(config: TrainConfig) -> Data:
    """The training and validation sets; DataError for a data set that cannot train."""
    if config.data == FASHION_MNIST:
        train = FashionMNISTSet(config.data_root, True, config.limit_per_class)
        val = (FashionMNISTSet(config.data_root, False, config.limit_per_class) if config.val is None
               else _folder_val(config.val, train.classes))
        return Data(train.classes, train, list(range(len(train))), val, list(range(len(val))))
    train = ImageFolderSet(config.data, config.limit_per_class)
    if config.val is not None:
        val = _folder_val(config.val, train.classes)
        return Data(train.classes, train, list(range(len(train))), val, list(range(len(val))))
    train_idx, val_idx = split_indices(train.labels, config.val_split, config.seed)
    if not train_idx or not val_idx:
        raise DataError(f"{config.data}: too few images to set {config.val_split:.0%} aside for "
                        "validation; add images or pass --val DIR")
    return Data(train.classes, train, train_idx, train, val_idx)


def _folder_val(folder: Path, classes: list[str]) -> ImageFolderSet:
    val = ImageFolderSet(folder)
    unknown = sorted(set(val.classes) - set(classes))
    if unknown:
        raise DataError(f"{folder}: validation classes {unknown} are not among the training "
                        f"classes {classes}")
    # Relabel by the training classes' order (a validation set may lack some classes).
    val.labels = [classes.index(val.classes[lab]) for lab in val.labels]
    val.classes = list(classes)
    return val


def build_model(config: TrainConfig, data: Data, device: torch.device) -> tuple[AlexNet, Preprocess]:
    """From scratch (section 5 or Kaiming init) or from existing weights with a new fc8; the
    preprocessing holds the training pixels' statistics (section 4.1) and their scale."""
    stats = pixel_statistics(data.train, data.train_idx, config.seed)
    if config.init is None:
        model = AlexNet(ModelConfig(num_classes=len(data.classes), groups=config.groups,
                                    init=config.init_scheme, width=config.width))
        mean = stats["mean"] if config.mean_subtraction else (0.0, 0.0, 0.0)
        if config.input_pixels == "raw":  # 0-255 (centred): Normalize's std is 1/255
            std = (1 / RAW_PIXEL_SCALE,) * 3
        else:  # about unit variance; without mean subtraction plain [0, 1]
            std = stats["std"] if config.mean_subtraction else (1.0, 1.0, 1.0)
    else:
        w = load_weights(config.init, "cpu")
        model = w.model
        model.replace_fc8(len(data.classes))
        mean, std = w.preprocess.mean, w.preprocess.std  # the initial weights' inputs
    if config.freeze_features:
        model.features.requires_grad_(False)
    pre = Preprocess(image_size=config.image_size, mean=tuple(mean), std=tuple(std),
                     eigval=stats["eigval"], eigvec=stats["eigvec"])
    return model.to(device), pre


def make_loaders(config: TrainConfig, data: Data, pre: Preprocess, device: torch.device,
                 dist: D.DistInfo) -> tuple[DataLoader, DataLoader]:
    train_tf = create_transform(pre, is_training=True, flip=config.flip,
                                pca_lighting=config.pca_lighting, random_crop=config.random_crop)
    val_tf = ten_crop_transform(pre) if config.ten_crop else create_transform(pre)
    train_ds = TransformedSubset(data.train, data.train_idx, train_tf)
    val_ds = TransformedSubset(data.val, data.val_idx, val_tf)
    workers = config.workers if config.workers is not None else (
        loader_workers(cuda=True) if device.type == "cuda" else 0)
    common = dict(batch_size=config.batch_size, num_workers=workers, collate_fn=collate_skipping,
                  pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    if dist.enabled:
        train_sampler = DistributedSampler(train_ds, shuffle=True, seed=config.seed)
        val_sampler = DistributedSampler(val_ds, shuffle=False)
        train_loader = DataLoader(train_ds, sampler=train_sampler, **common)
    else:
        # Reseeded every epoch (seed + epoch): the order does not depend on the global RNG.
        generator = torch.Generator()
        train_loader = DataLoader(train_ds, shuffle=True, generator=generator, **common)
        val_sampler = None
    val_loader = DataLoader(val_ds, sampler=val_sampler, shuffle=False, **common)
    return train_loader, val_loader


def set_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    else:
        loader.generator.manual_seed(seed + epoch)


def train(config: TrainConfig) -> TrainResult:
    """Train AlexNet as ``config`` says; after every epoch OUT holds checkpoint.pt (resumable),
    best.pt (lowest validation top-1 error) and metrics.jsonl; curves.png at least every
    CURVES_EVERY_S and when training stops.

    Raises DataError (unusable data, before any training), TrainingError (a loss that is not
    finite, a checkpoint that cannot resume) or TrainingInterrupted (Ctrl-C, after saving).
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    dist = D.init_distributed_mode(device)
    device = D.process_device(device, dist)
    try:
        return _run(config, device, dist, start)
    finally:
        D.cleanup()


@dataclass
class Session:
    """A run being trained: the data, the model (and its DDP wrapper), the optimiser state."""

    config: TrainConfig
    data: Data
    model: AlexNet
    net: torch.nn.Module  # the model, or DistributedDataParallel around it
    pre: Preprocess
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    state: Progress

    @property
    def last_path(self) -> Path:
        return self.config.out / "checkpoint.pt"

    @property
    def cuda(self) -> bool:
        return next(self.model.parameters()).is_cuda

    @property
    def best_path(self) -> Path:
        return self.config.out / "best.pt"

    def save_best(self, epoch: int, val_top1_error: float) -> None:
        """best.pt: the weights alone (half of checkpoint.pt, which also carries the
        optimiser's momentum), with their epoch and validation error."""
        save_checkpoint(self.best_path, self.model, self.pre, self.data.classes,
                        {"epoch": epoch, "val_top1_error": val_top1_error,
                         "config": self.config.as_dict()})

    def save(self, rng_ranks: list[dict] | None = None) -> None:
        """checkpoint.pt with everything --resume needs; ``rng_ranks``: every process's RNG
        states (``D.gather_objects``), else this one's alone (Ctrl-C: no collective then)."""
        st = self.state
        rng_ranks = rng_ranks or [rng_state(self.cuda)]
        training = {"config": self.config.as_dict(), "epoch": st.epoch, "metrics": st.metrics,
                    "best_val_top1_error": st.best_val_top1_error, "best_epoch": st.best_epoch,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "rng": rng_ranks[0],
                    "rng_ranks": rng_ranks}
        save_checkpoint(self.last_path, self.model, self.pre, self.data.classes, training)


def _start(config: TrainConfig, device: torch.device, dist: D.DistInfo) -> Session:
    """Data first (DataError before any work), then the model, fresh or resumed."""
    last_path = config.out / "checkpoint.pt"
    if not config.resume and not config.overwrite and last_path.exists():
        raise TrainingError(f"{config.out}: already holds a training run ({last_path.name}); "
                            "continue it with --resume, replace it with --overwrite, or use "
                            "another --out")
    seed_everything(config.seed + dist.rank)
    data = load_data(config)
    ckpt = _read_resumable(config, last_path, data.classes) if config.resume else None
    if ckpt is None:
        model, pre = build_model(config, data, device)
    else:
        model, pre = _model_from(ckpt, config, last_path, device)
    if device.type == "cuda":
        # channels_last weights for the channels_last inputs (engine.to_device): cuDNN's NHWC
        # kernels without a layout change per layer; fixed input sizes: let cuDNN time its
        # algorithms once (cudnn.benchmark) and keep the fastest.
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                lr=config.learning_rate(dist.world_size),
                                momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=LR_FACTOR, patience=config.lr_patience)
    state = Progress()
    if ckpt is not None:  # last: restores the RNG states too
        state = restore(ckpt["training"], optimizer, scheduler, last_path, dist.rank,
                        cuda=device.type == "cuda")
    return Session(config, data, model, net, pre, optimizer, scheduler, state)


def _run(config: TrainConfig, device: torch.device, dist: D.DistInfo, start: float) -> TrainResult:
    run = _start(config, device, dist)
    state = run.state
    train_loader, val_loader = make_loaders(config, run.data, run.pre, device, dist)
    skipped: set[str] = set()  # "path: reason" of every unreadable file met
    warned, curves = False, Curves(config.out / "curves.png", dist.is_main)
    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            set_epoch(train_loader, config.seed, epoch)
            record = _one_epoch(config, run.net, train_loader, val_loader, run.optimizer, device,
                                epoch, len(run.data.classes), dist)
            skipped |= set(record.pop("skipped_files"))
            run.scheduler.step(record["val_top1_error"])
            state.epoch = epoch
            state.metrics.append(record)
            if dist.is_main and not warned and (warning := stall_warning(config, state.metrics,
                                                                          run.data)):
                print(warning, file=sys.stderr, flush=True)
                warned = True
            improved = record["val_top1_error"] < state.best_val_top1_error
            if improved:
                state.best_val_top1_error, state.best_epoch = record["val_top1_error"], epoch
            rng_ranks = D.gather_objects(rng_state(device.type == "cuda"))  # every rank's streams
            if dist.is_main:
                run.save(rng_ranks)
                if improved or not run.best_path.exists():
                    run.save_best(epoch, record["val_top1_error"])
                write_metrics(config.out / "metrics.jsonl", state.metrics)
            curves.epoch_done(state.metrics)
            out_of_time = (config.max_minutes is not None
                           and time.perf_counter() - start >= config.max_minutes * 60)
            if D.broadcast_flag(out_of_time, device):
                break
    except KeyboardInterrupt:
        if dist.is_main:
            run.save()
        raise TrainingInterrupted(
            f"Interrupted in epoch {state.epoch + 1}: resumable checkpoint {run.last_path} "
            f"(continue with --resume; epoch {state.epoch + 1} starts again)") from None
    finally:  # also after Ctrl-C or a loss gone wrong: every finished epoch drawn
        curves.finish(state.metrics)
    return TrainResult(state.epoch, run.best_path, run.last_path, state.metrics,
                       state.best_val_top1_error, state.best_epoch, len(skipped),
                       time.perf_counter() - start, dist.is_main)


def stall_warning(config: TrainConfig, metrics: list[dict], data: Data) -> str | None:
    """One line saying that the run is not learning and what to try, or None.

    Not learning: after STALL_EPOCHS epochs the validation error is still that of always
    answering the largest validation class (without a validation figure: the training loss
    has not left log(classes)).
    """
    if len(metrics) < STALL_EPOCHS:
        return None
    last, classes = metrics[-1], len(data.classes)
    val_labels = [data.val.labels[i] for i in data.val_idx]
    chance = 1 - max(val_labels.count(c) for c in set(val_labels)) / len(val_labels)
    if math.isfinite(last["val_top1_error"]):
        stalled = last["val_top1_error"] >= chance - STALL_MARGIN
    else:
        stalled = abs(last["train_loss"] - math.log(classes)) <= STALL_LOSS * math.log(classes)
    if not stalled:
        return None
    if config.init is None and config.init_scheme == "paper":
        if config.input_pixels == "standardised":
            why = ("with standardised pixels it gives every image nearly the same fc7; use "
                   "--pixels raw (the paper's) with a lower --lr")
        else:
            why = f"on small data sets it needs a lower learning rate: try --lr {last['lr'] / 10:.3g}"
        hint = (f"the paper's initialisation (--init-scheme paper) stalls here: {why}, or "
                "--init-scheme kaiming (docs/train.md: 'Which initialisation learns')")
    elif last["train_loss"] > (1 + STALL_LOSS) * math.log(classes):  # worse than constant
        hint = f"the learning rate ({last['lr']:.3g}) may be too high: try --lr {last['lr'] / 3:.3g}"
    else:
        hint = (f"the learning rate ({last['lr']:.3g}) may be too low: try --lr "
                f"{last['lr'] * 3:.3g} or more epochs, and check that each class folder holds "
                "what its name says")
    return (f"warning: after {len(metrics)} epochs the validation top-1 error is "
            f"{last['val_top1_error']:.3f} (chance {chance:.3f}) and the training loss "
            f"{last['train_loss']:.3f} (log of {classes} classes: {math.log(classes):.3f}): the "
            f"network is not learning; {hint}")


def warmup(config: TrainConfig, optimizer, epoch: int, steps_per_epoch: int, world_size: int):
    """``before_step`` for the epochs of the warm-up: the learning rate rises linearly to
    ``config.learning_rate`` over ``config.warmup`` epochs; None once it is over. It depends
    on the epoch and the step alone, so that a resumed run warms up as an uninterrupted one."""
    total = round(config.warmup * steps_per_epoch)
    if (epoch - 1) * steps_per_epoch >= total:
        return None
    lr = config.learning_rate(world_size)

    def before_step(step: int) -> None:
        done = (epoch - 1) * steps_per_epoch + step + 1
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, done / total)

    return before_step


def _one_epoch(config: TrainConfig, net, train_loader, val_loader, optimizer, device,
               epoch: int, num_classes: int, dist: D.DistInfo) -> dict:
    """Train, evaluate, report unreadable files; returns the epoch's metrics.jsonl record."""
    begin = time.perf_counter()
    is_main = dist.is_main
    ramp = warmup(config, optimizer, epoch, len(train_loader), dist.world_size)
    stats = train_one_epoch(net, train_loader, optimizer, device, epoch,
                            progress=config.progress and is_main, image_size=config.image_size,
                            before_step=ramp)
    lr = optimizer.param_groups[0]["lr"]  # of the epoch; at its end during a warm-up
    ev: EvalStats = evaluate(net, val_loader, device, num_classes, ten_crop=config.ten_crop)
    skipped = stats.skipped + ev.skipped
    if skipped and is_main:
        print(f"epoch {epoch}: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}",
              file=sys.stderr, flush=True)
    return {"epoch": epoch, "lr": lr, "train_loss": stats.loss, "val_loss": ev.loss,
            "val_top1_error": ev.top1_error, "val_top5_error": ev.topk_error, "top_k": ev.k,
            "images_per_s": stats.images_per_s, "seconds": time.perf_counter() - begin,
            "skipped": len(skipped), "skipped_files": skipped}


def _read_resumable(config: TrainConfig, path: Path, classes: list[str]) -> dict:
    """The checkpoint to go on from, refused when it does not fit the data or the settings."""
    if not path.is_file():
        raise TrainingError(f"--resume: {path} does not exist; start without --resume")
    ckpt = read_checkpoint(path)
    training = ckpt.get("training") or {}
    if "optimizer" not in training:
        raise TrainingError(f"{path}: holds no training state to resume from")
    if list(ckpt["classes"]) != list(classes):
        raise TrainingError(f"{path}: trained on classes {ckpt['classes']}, but {config.data} "
                            f"has {classes}; use another --out to start afresh")
    before = training["config"]
    defaults = {f.name: f.default for f in fields(TrainConfig)}  # for settings added since
    for name in ("init", "groups", "width", "image_size", "freeze_features", "init_scheme"):
        now, then = config.as_dict()[name], before.get(name, defaults[name])
        if then != now:
            raise TrainingError(f"{path}: trained with {name}={then!r}, not "
                                f"{now!r}; resume with the same setting or use another --out")
    return ckpt


def _model_from(ckpt: dict, config: TrainConfig, path: Path, device) -> tuple[AlexNet, Preprocess]:
    from .weights import model_from_checkpoint

    model = model_from_checkpoint(ckpt, path)
    if config.freeze_features:
        model.features.requires_grad_(False)
    return model.to(device), Preprocess.from_dict(ckpt["preprocess"])
