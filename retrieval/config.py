"""The settings of the model side, as dataclasses with the paper's numbers as defaults.

Torch-free on purpose: the click options take their defaults from here, so `retrieve COMMAND
--help` shows them without importing torch. ``asdict`` of each goes into checkpoints and
index manifests.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import DataError

IMAGENET = "imagenet"  # torchvision's ImageNet-trained AlexNet, the default weights
FASHION_MNIST = "fashion-mnist"  # the data set `retrieve train` knows by name
ARCHITECTURES = ("paper", "torchvision")
# Which file of a RAW+JPEG pair (a RAW file with a same-name JPEG or HEIC beside it, as
# cameras write them) the walk takes (retrieval.walk.pair_raw): by default the JPEG, the
# camera's own rendering, which every viewer and browser shows; or the RAW file, or both.
RAW_CHOICES = ("jpeg", "raw", "both")
DEFAULT_RAW = "jpeg"
INIT_SCHEMES = ("paper", "kaiming")
# Dropout with probability 0.5 in the first two fully connected layers (section 4.2).
DROPOUT = 0.5

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
# Ours, not the paper's: from scratch, Kaiming-normal weights with zero biases (He et al.
# 2015), the learning rate raised linearly over the first epoch, and scaled with the square
# root of the batch size (0.01 at the paper's 128; measured in docs/train.md: on small data sets
# smaller batches learn at 0.01 x sqrt(batch / 128) and stall at the linear rule's lower
# rates). The paper's own scheme (section 5) is one option away, --init-scheme paper.
INIT_SCHEME = "kaiming"
WARMUP_EPOCHS = 1.0
IMAGE_SIZE = 224  # section 4.1: 224x224 patches of images scaled to 256
# What the network is fed: "standardised" pixels (the training set's mean subtracted, divided
# by its std: about unit variance), or "raw" ones, the paper's (section 2: "we trained our
# network on the (centered) raw RGB values of the pixels"), 0-255 minus the mean: about 60
# times larger, the scale section 5's N(0, 0.01) initialisation was made for.
PIXELS = ("standardised", "raw")
RAW_PIXEL_SCALE = 255
VAL_SPLIT = 0.1
MIN_IMAGE_SIZE = 64  # conv1 (stride 4) and three 3x3 stride-2 poolings leave 1x1 at 64x64

# Extraction: images per forward pass, and processes decoding images beside the model: on the
# CPU a few, leaving the other cores to the network (benchmarks/extract_throughput.py); with a
# GPU about one per core (``loader_workers``), decoding being what the GPU waits for.
EXTRACT_BATCH_SIZE = 64
EXTRACT_WORKERS = min(4, os.cpu_count() or 1)


def loader_workers(cuda: bool) -> int:
    """DataLoader processes decoding images for one process: EXTRACT_WORKERS on the CPU; with
    a GPU one per core this process may use, shared among the processes torchrun started on this
    machine (LOCAL_WORLD_SIZE), as torchvision's reference scripts size theirs."""
    if not cuda:
        return EXTRACT_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))

# show-kernels (the paper's Figure 3): how conv1 weights become colours, and the grid.
KERNEL_NORMALIZATIONS = ("per-kernel", "shared")
KERNEL_NORMALIZE = "per-kernel"
KERNEL_SCALE = 4  # an 11x11 kernel becomes a 44x44 tile
KERNEL_COLUMNS = 8  # tiles per row: 96 kernels -> 12x8, or 2 blocks of 6x8 with groups=2


@dataclass
class ModelConfig:
    """Architecture settings; saved in every checkpoint and index manifest."""

    arch: str = "paper"  # "paper" (96-256-384-384-256, LRN) or "torchvision" (64-192-384-256-256)
    num_classes: int = 1000
    groups: int = 1  # 2 reproduces the paper's two-GPU connectivity (conv2, conv4, conv5)
    dropout: float = DROPOUT
    init: str = "paper"  # "paper" (section 5) or "kaiming" (trains from scratch more readily)
    # Multiplies every layer's channels and fc6/fc7's units (rounded to even numbers, so that
    # groups=2 still splits them): 1 is the paper's network, 1/16 a 0.2M-parameter one whose
    # fc7 has 256 units, for tests and quick experiments.
    width: float = 1.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        if self.groups not in (1, 2):
            raise ValueError(f"groups must be 1 or 2, not {self.groups}")
        if self.arch == "torchvision" and self.groups != 1:
            raise ValueError("the torchvision architecture has no grouped convolutions (groups=1)")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown initialisation {self.init!r}; choose one of {INIT_SCHEMES}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], not {self.width}")


@dataclass
class ExtractConfig:
    """How images become vectors in batches: build-index, query, evaluate, demo."""

    batch_size: int = EXTRACT_BATCH_SIZE
    # DataLoader processes decoding images (0: in this process); None: ``loader_workers``
    workers: int | None = None
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    # JPEG files decoded on the GPU by nvJPEG (torchvision.io.decode_jpeg(device="cuda")), the
    # resize and crop there too; other files as on the CPU. Vectors differ slightly from the
    # CPU decode's (another resampling), so an index built so is queried best the same way.
    gpu_decode: bool = False

    @classmethod
    def for_queries(cls, images: int, batch_size: int, device: str = "auto") -> "ExtractConfig":
        """For ``images`` query images: decoding processes only pay off for more than a batch."""
        return cls(batch_size, 0 if images <= batch_size else None, device)


@dataclass
class TrainConfig:
    """Every setting of a training run; ``asdict`` of it is stored in each checkpoint."""

    data: str  # a folder with one sub-folder per class, or "fashion-mnist"
    out: Path = Path("runs/alexnet")
    val: Path | None = None  # a validation folder with the same classes; else a split of data
    val_split: float = VAL_SPLIT
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float | None = None  # None: LEARNING_RATE x sqrt(batch / BATCH_SIZE), see learning_rate
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    lr_patience: int = LR_PATIENCE
    # The learning rate rises linearly from 0 over these epochs; None: WARMUP_EPOCHS, or none
    # with init_scheme paper (whose recipe has no warm-up).
    warmup_epochs: float | None = None
    image_size: int = IMAGE_SIZE
    groups: int = 1
    width: float = 1.0  # ModelConfig.width: 1 is the paper's network
    workers: int | None = None  # DataLoader processes; None: ``loader_workers`` on CUDA, else 0
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False  # start afresh in an OUT that already holds a run
    seed: int = 0
    data_root: Path | None = None  # where fashion-mnist's files are
    init: str | None = None  # None (from scratch), "imagenet" or a checkpoint path
    freeze_features: bool = False
    ten_crop: bool = False
    flip: bool = True
    pca_lighting: bool = True
    random_crop: bool = True
    mean_subtraction: bool = True
    init_scheme: str = INIT_SCHEME  # "kaiming", or "paper" (section 5), for training from scratch
    pixels: str | None = None  # PIXELS; None: "raw" with init_scheme paper, else "standardised"
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
        if self.image_size < MIN_IMAGE_SIZE:
            raise DataError(f"image_size must be at least {MIN_IMAGE_SIZE} (smaller inputs "
                            f"vanish before pool5), not {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            raise DataError(f"the learning rate must be positive, not {self.lr}")
        if self.init_scheme not in INIT_SCHEMES:
            raise DataError(f"init_scheme must be one of {INIT_SCHEMES}, not {self.init_scheme!r}")
        if self.pixels is not None and self.pixels not in PIXELS:
            raise DataError(f"pixels must be one of {PIXELS}, not {self.pixels!r}")

    @property
    def input_pixels(self) -> str:
        """``pixels``, or the one the initialisation scheme was made for."""
        return self.pixels or ("raw" if self.init_scheme == "paper" else "standardised")

    def learning_rate(self, world_size: int = 1) -> float:
        """``lr``, or the paper's 0.01 scaled to the batch of all ``world_size`` processes by
        the square root of its ratio to the paper's 128."""
        if self.lr is not None:
            return self.lr
        return LEARNING_RATE * math.sqrt(self.batch_size * world_size / BATCH_SIZE)

    @property
    def warmup(self) -> float:
        """``warmup_epochs``, or the recipe's: WARMUP_EPOCHS, none in the paper's."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return 0.0 if self.init_scheme == "paper" else WARMUP_EPOCHS

    def as_dict(self) -> dict:
        """``asdict`` with paths as strings: what the checkpoint stores."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


DEMO_DATA = ("auto", FASHION_MNIST, "shapes")  # auto: Fashion-MNIST where found, else shapes


@dataclass
class DemoConfig:
    """`retrieve demo`: which data, how long, how many images, where the files go."""

    out: Path = Path("demo")
    data: str = "auto"  # "auto" (Fashion-MNIST if found, else shapes), "fashion-mnist", "shapes"
    minutes: float = 3.0
    per_class: int = 60  # training images per class (the index holds them too)
    queries_per_class: int = 10  # held-out query images per class
    device: str = "auto"
    seed: int = 0
    width: float = 1.0  # the network's ModelConfig.width: 1 is the paper's
    progress: bool = False
