"""Model sections of benchmarks/gpu_check.py: fc7 on the GPU against the CPU (TF32 on and off,
bf16), training speed at 224 px, extraction from JPEG files (CPU workers, nvJPEG) beside the
forward pass alone, Fashion-MNIST at 224 px for two minutes, resume on CUDA, torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
FMNIST_MINUTES = 2.0  # the issue: as many epochs as fit in two minutes
D2L_ACCURACY = 0.882  # d2l.ai's AlexNet chapter, Fashion-MNIST at 224 px, 10 epochs


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def paper_model(ctx, classes: int = 1000):
    """The paper's AlexNet (Kaiming weights, seeded), or a 1/16-width one in a dry run."""
    from retrieval.model import AlexNet, ModelConfig

    torch.manual_seed(0)
    return AlexNet(ModelConfig(num_classes=classes, init="kaiming", width=ctx.size(1.0, 1 / 16)))


def synced() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def fc7_numerics(ctx) -> dict:
    """fc7 of the same images on the CPU (float32) and the GPU: IEEE float32 (what extraction
    runs), TF32 (cuDNN's default) and bf16 autocast. Relative differences, and the distance at
    which an image finds itself when indexed on one device and queried on the other."""
    from retrieval.features import full_float32

    model = paper_model(ctx).eval()
    size, n = ctx.size((224, 64), (64, 4))
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    cpu = model.fc7(x)
    if not ctx.cuda:
        return {"images": n, "gpu": "no CUDA: CPU alone", "fc7_norm": float(cpu.norm(dim=1).mean())}
    model = model.cuda().to(memory_format=torch.channels_last)
    xg = x.cuda().contiguous(memory_format=torch.channels_last)
    out = {}
    with full_float32():
        out["ieee"] = model.fc7(xg)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    out["tf32"] = model.fc7(xg)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out["bf16"] = model.fc7(xg)
    facts = {"images": n, "fc7_norm": float(cpu.norm(dim=1).mean())}
    for mode, g in out.items():
        gap = (g.float().cpu() - cpu).norm(dim=1)  # (n,) Euclidean, as query prints
        facts[f"{mode}_rel"] = float((gap / cpu.norm(dim=1)).max())
        facts[f"{mode}_self_distance"] = float(gap.max())
    return facts


def train_throughput(ctx) -> dict:
    """Training steps from GPU memory at 224 px, batch 256, bf16 autocast, channels_last:
    without and with cudnn.benchmark, and compiled; then `retrieve train`'s own epoch loop
    (engine.train_one_epoch) fed from host memory."""
    from retrieval.engine import train_one_epoch

    if not ctx.cuda and not ctx.dry:
        return {"gpu": "no CUDA"}
    device, batch, size = ctx.device, ctx.size(256, 4), ctx.size(224, 64)
    steps, warm = ctx.size((30, 5), (1, 0))
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    facts = {"batch": batch, "size": size}

    def run(model, benchmark: bool) -> float:
        torch.backends.cudnn.benchmark = benchmark
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=ctx.cuda):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(warm):
            step()
        start = synced()
        for _ in range(steps):
            step()
        return round(batch * steps / (synced() - start), 1)

    model = paper_model(ctx).to(device).to(memory_format=torch.channels_last).train()
    facts["img_s"] = run(model, False)
    facts["img_s_benchmark"] = run(model, True)
    if ctx.cuda and ctx.left() > 90:
        start = time.perf_counter()
        compiled = torch.compile(model)
        facts["img_s_compiled"] = run(compiled, True)
        facts["compile_s"] = round(time.perf_counter() - start, 1)
    host = x.cpu().pin_memory() if ctx.cuda else x.cpu()  # one pinned batch, sent every step
    loader = [(host, y.cpu(), [])] * steps
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    stats = train_one_epoch(model, loader, opt, device, 1, progress=False)
    facts["engine_img_s"] = round(stats.images_per_s, 1)
    torch.backends.cudnn.benchmark = False
    return facts


def _jpeg(args) -> None:
    """One 800x600 JPEG of smooth colours and shapes (a photo's size and compressibility)."""
    from PIL import Image, ImageDraw

    path, seed, size = args
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    img.save(path, quality=90)


def jpegs(ctx, n: int, size=(800, 600)) -> list[Path]:
    folder = ctx.work / f"jpegs-{n}"
    paths = [folder / f"c{i % 4}" / f"{i:06d}.jpg" for i in range(n)]
    if not all(p.is_file() for p in paths):
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        jobs = [(p, i, size) for i, p in enumerate(paths)]
        if ctx.dry:
            list(map(_jpeg, jobs))
        else:
            with Pool(min(cores(), 16)) as pool:
                pool.map(_jpeg, jobs, chunksize=16)
    return paths


def extraction(ctx) -> dict:
    """Images/s from generated 800x600 JPEGs: the forward pass alone, decoding alone, the
    extractor with CPU workers and with nvJPEG, build-index end to end, and the training
    pipeline's decode + augment (what `retrieve train` gets from files)."""
    from indexes.build.incremental import build_index
    from retrieval.config import ExtractConfig, loader_workers
    from retrieval.data import collate_skipping
    from retrieval.features import FeatureExtractor, ImageDataset, full_float32
    from retrieval.transforms import Preprocess, create_transform
    from retrieval.weights import Weights

    n = ctx.size(4000, 4)
    paths = [str(p) for p in jpegs(ctx, n, ctx.size((800, 600), (160, 120)))]
    pre = Preprocess(image_size=ctx.size(224, 64))
    weights = Weights(paper_model(ctx).eval(), pre, "imagenet", "0" * 64)
    workers = loader_workers(ctx.cuda) if not ctx.dry else 0
    batch = ctx.size(256, 4)
    facts = {"images": n, "workers": workers, "batch": batch}
    fe = FeatureExtractor(weights, ExtractConfig(batch, workers, ctx.device.type))
    x = torch.randn(batch, 3, pre.image_size, pre.image_size, device=ctx.device)
    with full_float32():
        fe.model.fc7(x.contiguous(memory_format=torch.channels_last))
        start = synced()
        for _ in range(ctx.size(10, 1)):
            fe.model.fc7(x.contiguous(memory_format=torch.channels_last))
        facts["forward_img_s"] = round(batch * ctx.size(10, 1) / (synced() - start), 1)

    def rate(iterate) -> float:
        start = time.perf_counter()
        count = sum(iterate())
        return round(count / (time.perf_counter() - start), 1)

    decode = DataLoader(ImageDataset(paths, weights.transform, pre.resize_size), batch_size=batch,
                        num_workers=workers, collate_fn=collate_skipping)
    facts["decode_img_s"] = rate(lambda: (len(p) for _, p, _ in decode))
    facts["extract_img_s"] = rate(lambda: (len(p) for p, _, _ in fe.embed(paths)))
    vectors = np.concatenate([v for _, v, _ in fe.embed(paths[:64])])
    if ctx.cuda:
        nv = FeatureExtractor(weights, ExtractConfig(batch, workers, "cuda", gpu_decode=True))
        facts["nvjpeg_img_s"] = rate(lambda: (len(p) for p, _, _ in nv.embed(paths)))
        other = np.concatenate([v for _, v, _ in nv.embed(paths[:64])])
        facts["nvjpeg_rel_diff"] = float((np.linalg.norm(other - vectors, axis=1)
                                          / np.linalg.norm(vectors, axis=1)).max())
        report = build_index(ctx.work / "extract-nv", paths, nv)
        facts["build_index_nvjpeg_img_s"] = round(report.images_per_second, 1)
    report = build_index(ctx.work / "extract-cpu", paths, fe)
    facts["build_index_img_s"] = round(report.images_per_second, 1)
    train_tf = create_transform(pre, is_training=True)
    augment = DataLoader(ImageDataset(paths, train_tf, pre.resize_size), batch_size=batch,
                         num_workers=workers, collate_fn=collate_skipping)
    facts["train_pipeline_img_s"] = rate(lambda: (len(p) for _, p, _ in augment))
    return facts


def fashion_mnist(ctx) -> dict:
    """`retrieve train fashion-mnist` at 224 px for two minutes: test accuracy (its
    validation split is the test set), epochs, images/s; the conv1 kernels drawn."""
    from retrieval.config import TrainConfig
    from retrieval.kernels import save_kernels
    from retrieval.train import train
    from retrieval.weights import load_weights

    if ctx.dry:  # the same code on a few drawn shapes, one epoch
        result = _tiny(ctx, ctx.work / "fmnist", 1)
    else:
        root = ctx.carry / "fashion-mnist" if ctx.carry else None
        result = train(TrainConfig(data="fashion-mnist", data_root=root, out=ctx.work / "fmnist",
                                   epochs=100, max_minutes=FMNIST_MINUTES, device="cuda",
                                   progress=False, overwrite=True))
    best = 1 - result.best_val_top1_error
    sheet = save_kernels(load_weights(str(result.best_path)), ctx.out / "kernels-gpu.png")
    return {"test_accuracy": round(best, 4), "d2l_10_epochs": D2L_ACCURACY,
            "epochs": result.epochs_run, "train_s": round(result.seconds, 1),
            "img_s": [round(m["images_per_s"], 1) for m in result.metrics],
            "accuracy_by_epoch": [round(1 - m["val_top1_error"], 4) for m in result.metrics],
            "kernels": sheet.path.name}


def _tiny(ctx, out: Path, epochs: int, resume: bool = False):
    """`retrieve train` on drawn shapes at 64 px, a narrow network: seconds on the GPU."""
    from retrieval.config import TrainConfig
    from retrieval.datasets import make_shapes
    from retrieval.train import train

    data = ctx.work / "tiny-shapes"
    if not data.exists():
        make_shapes(data, per_class=ctx.size(32, 3))
    return train(TrainConfig(data=str(data), out=out, epochs=epochs, image_size=64,
                             width=ctx.size(0.25, 1 / 16), workers=0, device=ctx.device.type,
                             progress=False, resume=resume, overwrite=not resume, val_split=0.25))


def resume(ctx) -> dict:
    """Checkpoint save and --resume on CUDA: the GPU RNG states saved for the GPUs there are,
    restored; two epochs then two more against four in one go (a dry run goes on from the
    Fashion-MNIST section's one epoch)."""
    from retrieval.weights import read_checkpoint

    split = ctx.work / ("fmnist" if ctx.dry else "split")
    whole = None if ctx.dry else _tiny(ctx, ctx.work / "whole", 4)
    if not (split / "checkpoint.pt").is_file():
        _tiny(ctx, split, ctx.size(2, 1))
    resumed = _tiny(ctx, split, ctx.size(4, 2), resume=True)
    ckpt = read_checkpoint(resumed.last_path)["training"]
    facts = {"epochs": resumed.epochs_run, "gpu_rng_states": len(ckpt["rng"]["cuda"]),
             "ranks_saved": len(ckpt["rng_ranks"]),
             "loss_resumed": [m["train_loss"] for m in resumed.metrics]}
    if whole is not None:
        facts["loss_whole"] = [m["train_loss"] for m in whole.metrics]
        facts["max_loss_diff"] = float(np.abs(np.subtract(facts["loss_whole"],
                                                          facts["loss_resumed"])).max())
    return facts


def torchrun(ctx) -> dict:
    """torchrun with 2 processes on the one GPU (gloo: they share it) for train and
    build-index, beside one process: the same index, training finishing in both."""
    from indexes.store.store import open_for_reading

    if ctx.dry:
        return {"dry_run": "torchrun is launched on the GPU run only "
                           "(tests/test_distributed_build.py launches it on the CPU)"}
    data = ctx.work / "tiny-shapes"
    if not data.exists():
        _tiny(ctx, ctx.work / "warm", 1)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    boot = [str(ROOT / "benchmarks" / "gpu_boot_run.py")]
    facts = {}
    for procs in (1, 2):
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc-per-node={procs}", *boot]
        for what, args in (("train", ["train", str(data), "--out", str(ctx.work / f"run{procs}"),
                                      "--epochs", "2", "--image-size", "64", "--width", "0.25",
                                      "--workers", "2", "--overwrite", "--device", "cuda"]),
                           ("build", ["build-index", str(data), "--index",
                                      str(ctx.work / f"index{procs}"), "--weights",
                                      str(ctx.work / "run1" / "best.pt"), "--workers", "2",
                                      "--device", "cuda", "--quiet"])):
            start = time.perf_counter()
            done = subprocess.run(launch + args, env=env, capture_output=True, text=True,
                                  timeout=max(10, ctx.left() - 5))
            facts[f"{what}_{procs}_s"] = round(time.perf_counter() - start, 1)
            if done.returncode:
                facts[f"{what}_{procs}_error"] = (done.stderr or done.stdout)[-400:]
    one, two = (open_for_reading(ctx.work / f"index{p}") for p in (1, 2))
    same = {}
    for store in (one, two):
        ids = sorted(store.items().items())
        same[store] = (ids, store.reconstruct([i.id for _, i in ids]))
    (a_items, a), (b_items, b) = same[one], same[two]
    facts["same_files"] = [p for p, _ in a_items] == [p for p, _ in b_items]
    facts["max_vector_rel_diff"] = float((np.linalg.norm(a - b, axis=1)
                                          / np.maximum(np.linalg.norm(a, axis=1), 1e-9)).max())
    return facts
