"""Training throughput of the paper's AlexNet: images/s of forward + backward + SGD step on
synthetic in-memory batches (no data loading), beside the FLOPs per image and achieved FLOP/s.

    python benchmarks/train_throughput.py                       # batch 128, 224x224, auto device
    python benchmarks/train_throughput.py --device cpu --steps 3 --image-size 64

The training step is the one `retrieve train` runs: bf16 autocast and channels_last on CUDA,
float32 on the CPU. Training FLOPs are counted as 3x the forward pass (backward ~ 2x forward).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval.model import AlexNet, ModelConfig, count_parameters  # noqa: E402
from retrieval.config import MOMENTUM, WEIGHT_DECAY  # noqa: E402
from retrieval.weights import resolve_device  # noqa: E402


def forward_flops(model: AlexNet, image_size: int) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass."""
    x = torch.zeros(1, 3, image_size, image_size)
    model = model.cpu().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def time_steps(model: AlexNet, device: torch.device, batch: int, size: int, warmup: int,
               steps: int) -> float:
    """Seconds per training step, averaged over ``steps`` after ``warmup`` untimed ones."""
    model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    x = torch.randn(batch, 3, size, size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.config.num_classes, (batch,), device=device)
    use_amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--groups", type=int, default=1, choices=(1, 2))
    args = p.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = AlexNet(ModelConfig(num_classes=args.classes, groups=args.groups))
    fwd = forward_flops(model, args.image_size)
    seconds = time_steps(model, device, args.batch_size, args.image_size, args.warmup, args.steps)
    images_per_s = args.batch_size / seconds
    train_flops = 3 * fwd
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    rows = [
        ("device", name),
        ("parameters", f"{count_parameters(model):,}"),
        ("batch x image", f"{args.batch_size} x {args.image_size}x{args.image_size}"),
        ("precision", "bf16 autocast" if device.type == "cuda" else "float32"),
        ("seconds per step", f"{seconds:.3f}"),
        ("training images/s", f"{images_per_s:,.1f}"),
        ("forward GFLOP/image", f"{fwd / 1e9:.3f}"),
        ("training GFLOP/image (3x fwd)", f"{train_flops / 1e9:.3f}"),
        ("achieved TFLOP/s", f"{images_per_s * train_flops / 1e12:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
