"""Checkpoints and pretrained weights: one function turns a weights argument into a ready model.

A checkpoint is one ``torch.save`` file of plain containers and tensors, loaded with
``weights_only=True`` so that opening it never runs code from it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torchvision import transforms as T

from .atomic import write_atomic
from .config import IMAGENET
from .digest import file_stamp, sha256_file
from .errors import WeightsError
from .model import AlexNet, ModelConfig
from .transforms import Preprocess, create_transform

CHECKPOINT_FORMAT = "retrieve-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Weights:
    """A model ready for extraction, with what produced it."""

    model: AlexNet
    preprocess: Preprocess
    source: str  # "imagenet" or the checkpoint's absolute path
    sha256: str  # of the weights file
    classes: list[str] = field(default_factory=list)
    stamp: list[int] = field(default_factory=list)  # file_stamp of the weights file, as read

    @property
    def transform(self) -> T.Compose:
        return create_transform(self.preprocess, is_training=False)


def read_digested(path: Path, read, trusted: tuple[list[int], str] | None = None):
    """``read()``, with the sha256 and stamp of ``path``: (result, sha256, stamp).

    ``trusted`` is a (stamp, sha256) pair recorded earlier (by build-index): when the file's
    stamp equals it both before and after reading, its sha256 is taken from there instead of
    hashing the file again (a second pass over hundreds of MB on every query).
    """
    before = file_stamp(path)
    result = read()
    after = file_stamp(path)
    if trusted is not None and before == after == list(trusted[0]):
        return result, trusted[1], after
    return result, sha256_file(path), after


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """torch.save written aside and renamed: a crash leaves either the old file or the new one."""
    write_atomic(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | os.PathLike, model: AlexNet, preprocess: Preprocess,
                    classes: list[str], training: dict | None = None) -> None:
    """Save weights, architecture, preprocessing, class names and optional training state.

    ``training`` holds resumable state (optimizer, scheduler, epoch, rng, config, ...): plain
    containers, numbers, strings and tensors only, so that ``weights_only`` loading accepts it.
    """
    model = getattr(model, "module", model)  # un-wrap DistributedDataParallel
    # contiguous: one layout on disk whether the model trained in channels_last (CUDA) or not
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": asdict(model.config),
        "preprocess": asdict(preprocess),
        "classes": list(classes),
        "state_dict": state,
        "training": training,
    }, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's contents (on the CPU) or raise WeightsError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncation, refused globals, zip errors...
        # torch wraps every refusal of its safe unpickler (also plain garbage bytes) in a
        # message about `weights_only`; only an unsupported global means code or objects.
        text = str(e).split("WeightsUnpickler error:")[-1].strip()
        first = text.splitlines()[0] if text else type(e).__name__
        if "Unsupported global" in str(e):
            reason = "refused: it contains code or objects other than weights"
        else:
            reason = f"not a readable checkpoint ({first[:120]})"
        raise WeightsError(f"{path}: {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not a retrieve checkpoint (made by `retrieve train`)")
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise WeightsError(f"{path}: checkpoint version {ckpt['version']} is newer than this "
                           f"retrieve understands ({CHECKPOINT_VERSION}); upgrade retrieve")
    return ckpt


@contextmanager
def uninitialised_parameters():
    """Modules built inside keep torch.empty parameters: torch.nn.init does nothing there.

    For a model whose every parameter a strict load_state_dict overwrites next: drawing 60M
    random numbers first (torch's default init, then the paper's) takes ~0.6 s of a query.
    The same idea as transformers' ``no_init_weights``; ``torch.device("meta")`` would cost
    more, ~1.3 s the first time in a process.
    """
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint") -> AlexNet:
    try:
        with uninitialised_parameters():
            model = AlexNet(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["state_dict"])  # strict: every parameter is overwritten
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: checkpoint does not match the model "
                           f"({_one_line(e, 200)})") from None
    return model


def imagenet_weights_path() -> Path:
    """Where torchvision caches its ImageNet AlexNet weights (under $TORCH_HOME/hub)."""
    from torchvision.models import AlexNet_Weights

    name = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_imagenet(trusted: tuple[list[int], str] | None = None) -> Weights:
    """torchvision's ImageNet-trained AlexNet, through its weights API (cached after one download)."""
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1

    def read() -> dict:
        return weights.get_state_dict(progress=False, check_hash=True)

    try:
        if not imagenet_weights_path().is_file():
            read()  # downloads it into the cache (once), where it is read and hashed below
        state, sha256, stamp = read_digested(imagenet_weights_path(), read, trusted)
    except Exception as e:  # URLError, socket errors, hash mismatch...
        raise WeightsError(
            f"imagenet: torchvision's ImageNet weights are not cached at {imagenet_weights_path()} "
            f"and could not be downloaded ({type(e).__name__}: {_one_line(e, 100)}); use a checkpoint "
            "from `retrieve train`, or run `retrieve demo` to make one") from None
    with uninitialised_parameters():
        model = AlexNet(ModelConfig(arch="torchvision", num_classes=len(weights.meta["categories"])))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(f"imagenet: cached weights at {imagenet_weights_path()} do not fit "
                           f"AlexNet ({_one_line(e, 120)}); delete the file to download it "
                           "again") from None
    pre = Preprocess(image_size=224)  # resize 256, crop 224, ImageNet mean and std
    return Weights(model, pre, IMAGENET, sha256, list(weights.meta["categories"]), stamp)


def load_weights(spec: str | os.PathLike, device: str | torch.device = "cpu",
                 trusted: tuple[list[int], str] | None = None) -> Weights:
    """Turn a weights argument (a checkpoint path or ``imagenet``) into a model in eval mode.

    ``trusted``: the (stamp, sha256) an index recorded for this file (see ``read_digested``).
    """
    if str(spec) == IMAGENET:
        w = load_imagenet(trusted)
    else:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise WeightsError(f"{path}: no such checkpoint file")
        ckpt, sha256, stamp = read_digested(path, lambda: read_checkpoint(path), trusted)
        w = Weights(model_from_checkpoint(ckpt, path), Preprocess.from_dict(ckpt["preprocess"]),
                    str(path), sha256, list(ckpt.get("classes", [])), stamp)
    w.model.to(device).eval()
    return w


def _one_line(e: Exception, limit: int) -> str:
    """An exception's message on one line (torch's load_state_dict errors span several)."""
    return " ".join(str(e).split())[:limit]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA where present, else the CPU. Asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WeightsError("--device cuda: no CUDA GPU is available here; use --device cpu")
    return torch.device(device)
