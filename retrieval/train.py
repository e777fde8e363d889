"""`retrieve train`: the paper's training recipe (Krizhevsky et al. 2012, sections 4 and 5) on
a folder of labelled images or Fashion-MNIST, with resumable checkpoints, on CPU, one GPU or
several (torchrun)."""

from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed as D
from .curves import write_curves, write_metrics
from .data import (FASHION_MNIST, FashionMNISTSet, ImageFolderSet, LabelledImages,
                   TransformedSubset, collate_skipping, pixel_statistics, split_indices)
from .engine import EvalStats, evaluate, train_one_epoch
from .errors import DataError, TrainingError, TrainingInterrupted
from .model import AlexNet, ModelConfig
from .transforms import Preprocess, create_transform, ten_crop_transform
from .weights import load_weights, read_checkpoint, resolve_device, save_checkpoint

# Krizhevsky et al. 2012, section 5: SGD, batch 128, momentum 0.9, weight decay 0.0005,
# learning rate 0.01 divided by 10 when the validation error stopped improving, ~90 epochs.
BATCH_SIZE = 128
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
LEARNING_RATE = 0.01
LR_FACTOR = 0.1
EPOCHS = 90
# "Stopped improving": epochs without a lower validation error before the division (ours;
# the paper divided three times in 90 epochs, by hand).
LR_PATIENCE = 5
VAL_SPLIT = 0.1


@dataclass
class TrainConfig:
    """Every setting of a training run; ``asdict`` of it is stored in each checkpoint."""

    data: str  # a folder with one sub-folder per class, or "fashion-mnist"
    out: Path = Path("runs/alexnet")
    val: Path | None = None  # a validation folder with the same classes; else a split of data
    val_split: float = VAL_SPLIT
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    lr_patience: int = LR_PATIENCE
    image_size: int = 224
    groups: int = 1
    workers: int | None = None  # DataLoader processes; None: 8 with CUDA, 0 on the CPU
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    data_root: Path | None = None  # where fashion-mnist's files are
    init: str | None = None  # None (from scratch), "imagenet" or a checkpoint path
    freeze_features: bool = False
    ten_crop: bool = False
    flip: bool = True
    pca_lighting: bool = True
    random_crop: bool = True
    mean_subtraction: bool = True
    init_scheme: str = "paper"  # "paper" (section 5) or "kaiming", for training from scratch
    max_minutes: float | None = None  # stop after the epoch in which this budget runs out
    limit_per_class: int | None = None  # at most this many images per class (each split)
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.val = Path(self.val) if self.val is not None else None
        self.data_root = Path(self.data_root) if self.data_root is not None else None
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.lr > 0:
            raise DataError(f"the learning rate must be positive, not {self.lr}")
        if self.init_scheme not in ("paper", "kaiming"):
            raise DataError(f"init_scheme must be 'paper' or 'kaiming', not {self.init_scheme!r}")

    def as_dict(self) -> dict:
        """``asdict`` with paths as strings: what the checkpoint stores."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


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
    preprocessing holds the training pixels' statistics (section 4.1)."""
    stats = pixel_statistics(data.train, data.train_idx, config.seed)
    if config.init is None:
        model = AlexNet(ModelConfig(num_classes=len(data.classes), groups=config.groups,
                                    init=config.init_scheme))
        mean, std = ((stats["mean"], stats["std"]) if config.mean_subtraction
                     else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
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
        min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
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


def rng_state() -> dict:
    """torch, CUDA, numpy and python RNG states as tensors and plain lists (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(py_state), gauss]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Progress:
    """What a checkpoint must carry besides the weights and the optimiser to go on."""

    epoch: int = 0  # epochs completed
    metrics: list[dict] = field(default_factory=list)
    best_val_top1_error: float = math.inf
    best_epoch: int = 0


def train(config: TrainConfig) -> TrainResult:
    """Train AlexNet as ``config`` says; after every epoch OUT holds checkpoint.pt (resumable),
    best.pt (lowest validation top-1 error), metrics.jsonl and curves.png.

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


def _run(config: TrainConfig, device: torch.device, dist: D.DistInfo, start: float) -> TrainResult:
    seed_everything(config.seed + dist.rank)
    data = load_data(config)  # DataError here, before a model is built
    last_path, best_path = config.out / "checkpoint.pt", config.out / "best.pt"
    ckpt = _read_resumable(config, last_path, data.classes) if config.resume else None
    if ckpt is None:
        model, pre = build_model(config, data, device)
    else:
        model, pre = _model_from(ckpt, config, last_path, device)
    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=LR_FACTOR, patience=config.lr_patience)
    state = Progress()
    if ckpt is not None:
        state = _restore(ckpt["training"], optimizer, scheduler, last_path)
    train_loader, val_loader = make_loaders(config, data, pre, device, dist)
    skipped: set[str] = set()  # "path: reason" of every unreadable file met

    def save(path: Path) -> None:
        training = {"config": config.as_dict(), "epoch": state.epoch, "metrics": state.metrics,
                    "best_val_top1_error": state.best_val_top1_error,
                    "best_epoch": state.best_epoch, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_state()}
        save_checkpoint(path, model, pre, data.classes, training=training)

    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            set_epoch(train_loader, config.seed, epoch)
            record = _one_epoch(config, net, train_loader, val_loader, optimizer, device, epoch,
                                len(data.classes), dist.is_main)
            scheduler.step(record["val_top1_error"])
            state.epoch = epoch
            state.metrics.append(record)
            skipped |= set(record.pop("skipped_files"))
            improved = record["val_top1_error"] < state.best_val_top1_error
            if improved:
                state.best_val_top1_error, state.best_epoch = record["val_top1_error"], epoch
            if dist.is_main:
                save(last_path)
                if improved or not best_path.exists():
                    link_or_copy(last_path, best_path)
                write_metrics(config.out / "metrics.jsonl", state.metrics)
                write_curves(config.out / "curves.png", state.metrics)
            out_of_time = (config.max_minutes is not None
                           and time.perf_counter() - start >= config.max_minutes * 60)
            if D.broadcast_flag(out_of_time, device):
                break
    except KeyboardInterrupt:
        if dist.is_main:
            save(last_path)
        raise TrainingInterrupted(
            f"Interrupted in epoch {state.epoch + 1}: resumable checkpoint {last_path} "
            f"(continue with --resume; epoch {state.epoch + 1} starts again)") from None
    return TrainResult(state.epoch, best_path, last_path, state.metrics,
                       state.best_val_top1_error, state.best_epoch, len(skipped),
                       time.perf_counter() - start)


def _one_epoch(config: TrainConfig, net, train_loader, val_loader, optimizer, device,
               epoch: int, num_classes: int, is_main: bool) -> dict:
    """Train, evaluate, report unreadable files; returns the epoch's metrics.jsonl record."""
    begin = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(net, train_loader, optimizer, device, epoch,
                            progress=config.progress and is_main)
    ev: EvalStats = evaluate(net, val_loader, device, num_classes, ten_crop=config.ten_crop)
    skipped = stats.skipped + ev.skipped
    if skipped and is_main:
        print(f"epoch {epoch}: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}",
              file=sys.stderr)
    return {"epoch": epoch, "lr": lr, "train_loss": stats.loss, "val_loss": ev.loss,
            "val_top1_error": ev.top1_error, "val_top5_error": ev.topk_error, "top_k": ev.k,
            "images_per_s": stats.images_per_s, "seconds": time.perf_counter() - begin,
            "skipped": len(skipped), "skipped_files": skipped}


def link_or_copy(src: Path, dst: Path) -> None:
    """dst becomes src's current contents, atomically: a hard link where the file system has
    them (no second write of ~0.5 GB; src is later replaced by a new file, not rewritten)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


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
    for name in ("init", "groups", "image_size", "freeze_features", "init_scheme"):
        now = config.as_dict()[name]
        if before.get(name) != now:
            raise TrainingError(f"{path}: trained with {name}={before.get(name)!r}, not "
                                f"{now!r}; resume with the same setting or use another --out")
    return ckpt


def _model_from(ckpt: dict, config: TrainConfig, path: Path, device) -> tuple[AlexNet, Preprocess]:
    from .weights import model_from_checkpoint

    model = model_from_checkpoint(ckpt, path)
    if config.freeze_features:
        model.features.requires_grad_(False)
    return model.to(device), Preprocess.from_dict(ckpt["preprocess"])


def _restore(training: dict, optimizer, scheduler, path: Path) -> Progress:
    try:
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        set_rng_state(training["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise TrainingError(f"{path}: training state cannot be restored ({str(e)[:150]})") from None
    return Progress(training["epoch"], list(training["metrics"]),
                    training["best_val_top1_error"], training["best_epoch"])
