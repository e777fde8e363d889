"""One training epoch and one evaluation pass (torchvision references' split), one code path
for CPU and CUDA: bf16 autocast and channels_last switch on with CUDA, and the host reads a
number from the GPU only every SYNC_EVERY steps."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .distributed import all_reduce_sum
from .errors import TrainingError

# Steps between the reads of a CUDA number (the loss check, the progress bar): each read waits
# for the GPU to finish its queue, which then runs dry while the host prepares the next step.
# A loss that stops being finite is still reported with its own step; on the CPU, where a
# read costs nothing, every step is checked before its update, as always.
SYNC_EVERY = 50


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EvalStats:
    loss: float
    top1_error: float
    topk_error: float
    k: int
    images: int
    skipped: list[str] = field(default_factory=list)


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    """Non-blocking copies (the loader pins memory on CUDA); NHWC on CUDA, where cuDNN's
    convolutions are fastest in channels_last."""
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, progress: bool = True,
                    image_size: int | None = None,
                    before_step: Callable[[int], None] | None = None) -> EpochStats:
    """SGD over one pass of ``loader`` (batches from ``data.collate_skipping``); returns the mean
    loss and the throughput. Raises TrainingError at the first loss that is not finite.

    Under DistributedDataParallel every process must take part in every step: a batch with
    no readable image becomes one blank ``image_size`` image whose loss counts zero, and a
    loss that is not finite on any process stops all of them. ``before_step(step)`` runs
    before each SGD step (the learning-rate warm-up).
    """
    model.train()
    use_amp = device.type == "cuda"
    every = sync_every(device)
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    first_bad = _FirstBad(device)
    seen, skipped, start = 0, [], time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", file=sys.stderr,
               disable=not progress, leave=False, dynamic_ncols=True)
    for step, (images, labels, bad) in enumerate(bar):
        skipped += [reason for _, reason in bad]
        weight = 1.0
        if images is None:
            if not ddp:
                continue
            images, labels, weight = torch.zeros(1, 3, image_size, image_size), torch.zeros(
                1, dtype=torch.long), 0.0
        images, labels = to_device(images, labels, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(images)  # (B, classes)
        loss = F.cross_entropy(logits.float(), labels) * weight
        first_bad.see(step, loss)
        if (step + 1) % every == 0:
            first_bad.stop(epoch, optimizer, ddp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step(step)
        optimizer.step()
        if weight == 0:
            continue
        total_loss += loss.detach() * len(labels)
        seen += len(labels)
        if progress and (step + 1) % every == 0:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.0f}")
    bar.close()
    first_bad.stop(epoch, optimizer, ddp)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    loss_sum, n = all_reduce_sum([total_loss.item(), float(seen)], device)
    if n == 0:
        raise TrainingError(f"epoch {epoch}: no readable training image in the whole epoch")
    # Throughput of all processes together: images over the slowest process's time.
    return EpochStats(loss_sum / n, int(n), seconds, skipped)


def sync_every(device: torch.device) -> int:
    """Steps between the host's reads of a training number: SYNC_EVERY on CUDA, 1 elsewhere."""
    return SYNC_EVERY if device.type == "cuda" else 1


class _FirstBad:
    """The step and value of the first loss that is not finite, kept on the device (no wait)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def see(self, step: int, loss: torch.Tensor) -> None:
        new = (~torch.isfinite(loss.detach())) & (self.step < 0)
        self.step = torch.where(new, torch.full_like(self.step, step), self.step)
        self.value = torch.where(new, loss.detach().float(), self.value)

    def stop(self, epoch: int, optimizer, ddp: bool) -> None:
        """TrainingError when one was seen, here or (under DDP) in any process: all stop."""
        step = int(self.step.item())
        anywhere = all_reduce_sum([float(step >= 0)], self.device)[0] if ddp else step >= 0
        if not anywhere:
            return
        where = (f"step {step + 1}: the loss became {self.value.item()}" if step >= 0
                 else "the loss of another process became")
        raise TrainingError(
            f"epoch {epoch}, {where} (not finite); training stopped. Lower --lr (now "
            f"{optimizer.param_groups[0]['lr']:g})")


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int,
             ten_crop: bool = False) -> EvalStats:
    """Validation loss and top-1 / top-k error, k = min(5, classes). Centre crop, or with
    ``ten_crop`` the paper's test (section 4.1): softmax averaged over ten (B, 10, 3, S, S)
    crops, the loss being the negative log of that average probability."""
    model.eval()
    use_amp = device.type == "cuda"
    k = min(5, num_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1 ok, top-k ok, n
    skipped = []
    for images, labels, bad in loader:
        skipped += [reason for _, reason in bad]
        if images is None:
            continue
        crops = images.shape[1] if ten_crop else 1
        if ten_crop:
            images = images.flatten(0, 1)  # (B*10, 3, S, S)
        images, labels = to_device(images, labels, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(images).float()
        probs = logits.softmax(-1).view(len(labels), crops, -1).mean(1)  # (B, classes)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
        top = probs.topk(k, dim=-1).indices  # (B, k)
        hits = top == labels[:, None]
        sums += torch.stack([loss.double(), hits[:, 0].sum().double(),
                             hits.any(-1).sum().double(), torch.tensor(len(labels), device=device,
                                                                       dtype=torch.float64)])
    loss_sum, top1, topk, n = all_reduce_sum(sums.tolist(), device)
    if n == 0:
        return EvalStats(math.nan, math.nan, math.nan, k, 0, skipped)
    return EvalStats(loss_sum / n, 1 - top1 / n, 1 - topk / n, k, int(n), skipped)
