"""Feature-extraction throughput: build-index end to end against its ceiling and img2vec.

JPEG "photos" of ordinary sizes (a seeded mix of 0.3 to 16 megapixels) are written once under
/tmp, then one run measures, on the same images and the same weights file:

  F  forward only: fc7 images/s of the model on batches already in memory
  D  decode + draft + resize + crop images/s on all cores (a process pool, our load path)
  C  1 / (1/F + 1/D): the ceiling when decoding and the model share the CPU cores
  E  build-index end to end (indexes.build.incremental.build_index + FeatureExtractor, fresh index dir)
  B  img2vec-pytorch's usual per-image loop (PIL open, Img2Vec.get_vec), alexnet fc7

    python benchmarks/extract_throughput.py --n 60          # a few minutes on 2 CPU cores
    python benchmarks/extract_throughput.py --device cuda   # where a GPU is present

No network: torchvision's ImageNet AlexNet weights file is written (random weights, same
architecture) into a temporary TORCH_HOME that both tools read.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEGAPIXELS = (0.3, 1, 2, 5, 8, 12, 16)  # phone and camera sizes


def make_photos(n: int, seed: int = 0) -> list[Path]:
    """n JPEGs (quality 90, 4:3 or 3:4) cached under /tmp; smooth content, like photos."""
    folder = Path(tempfile.gettempdir()) / f"retrieve-bench-photos-{n}-{seed}"
    paths = [folder / f"{i:04d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for p in paths:
        mp = rng.choice(MEGAPIXELS) * 1e6
        w = int((mp * 4 / 3) ** 0.5)
        h = int(mp / w)
        if rng.random() < 0.3:
            w, h = h, w
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        img.save(p.with_suffix(".tmp"), "JPEG", quality=90)
        os.replace(p.with_suffix(".tmp"), p)
    return paths


def scratch_dir(prefix: str) -> Path:
    """A temporary folder, removed when the script exits (a 100k-vector index is 1.6 GB)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def fake_imagenet_weights(torch_home: Path) -> None:
    """torchvision's AlexNet file name, random weights: what --weights imagenet and img2vec load."""
    import torchvision
    from torchvision.models import AlexNet_Weights

    name = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    target = torch_home / "hub" / "checkpoints" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), target)


def _decode(args):
    from retrieval.images import load_image
    path, transform, draft = args
    return transform(load_image(path, draft_size=draft)).shape


def _single_thread(_=None) -> None:
    torch.set_num_threads(1)


def measure_forward(weights, batch_size: int, device: str, batches: int) -> float:
    """The extractor's own forward (memory format, copy to device, vectors back to numpy)."""
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    extractor = FeatureExtractor(weights, ExtractConfig(batch_size, 0, device))
    x = torch.randn(batch_size, 3, 224, 224)
    extractor._fc7(x)  # warm-up
    t = time.perf_counter()
    for _ in range(batches):
        extractor._fc7(x)  # ends with .cpu(): synchronised on CUDA
    return batches * batch_size / (time.perf_counter() - t)


def measure_decode(paths, weights, processes: int) -> float:
    jobs = [(str(p), weights.transform, weights.preprocess.resize_size) for p in paths]
    with Pool(processes, initializer=_single_thread) as pool:
        pool.map(_decode, jobs[:processes])  # warm-up: workers started, imports done
        t = time.perf_counter()
        pool.map(_decode, jobs, chunksize=1)
        return len(paths) / (time.perf_counter() - t)


def measure_build(paths, weights, batch_size: int, workers: int, device: str) -> float:
    from indexes.build.incremental import build_index
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor

    extractor = FeatureExtractor(weights, ExtractConfig(batch_size, workers, device))
    with tempfile.TemporaryDirectory() as index_dir:
        t = time.perf_counter()
        report = build_index(index_dir, paths, extractor)
        seconds = time.perf_counter() - t
    assert report.extracted == len(paths), report
    return len(paths) / seconds


def measure_img2vec(paths, device: str) -> float | None:
    try:
        from img2vec_pytorch import Img2Vec
    except ImportError:
        print("img2vec-pytorch is not installed (benchmark only): pip install img2vec_pytorch",
              file=sys.stderr)
        return None
    img2vec = Img2Vec(cuda=device.startswith("cuda"), model="alexnet", layer_output_size=4096)
    img2vec.get_vec(Image.open(paths[0]).convert("RGB"))  # warm-up
    t = time.perf_counter()
    for p in paths:
        v = img2vec.get_vec(Image.open(p).convert("RGB"))
    assert v.shape == (4096,)
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    from retrieval.config import EXTRACT_BATCH_SIZE, EXTRACT_WORKERS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=60, help="number of JPEG photos")
    ap.add_argument("--batch-size", type=int, default=EXTRACT_BATCH_SIZE)
    ap.add_argument("--workers", type=int, default=EXTRACT_WORKERS, help="build-index workers")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1, help="E measured this many times (best)")
    ap.add_argument("--no-baseline", action="store_true", help="skip img2vec (B)")
    args = ap.parse_args()

    paths = make_photos(args.n)
    torch_home = scratch_dir("retrieve-bench-torch-")
    os.environ["TORCH_HOME"] = str(torch_home)
    fake_imagenet_weights(torch_home)
    from retrieval.weights import load_weights
    weights = load_weights("imagenet", args.device)

    F = measure_forward(weights, args.batch_size, args.device, batches=max(2, args.n // args.batch_size))
    D = measure_decode(paths, weights, os.cpu_count() or 1)
    C = 1 / (1 / F + 1 / D) if args.device == "cpu" else min(F, D)
    E = max(measure_build(paths, weights, args.batch_size, args.workers, args.device)
            for _ in range(args.repeat))
    B = None if args.no_baseline else measure_img2vec(paths, args.device)

    mp = sum(Image.open(p).width * Image.open(p).height for p in paths) / len(paths) / 1e6
    print(f"{args.n} JPEGs, mean {mp:.1f} MP; device {args.device}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, workers {args.workers}")
    print(f"{'measure':<44}{'images/s':>10}")
    rows = [("F forward only (fc7, in-memory batches)", F),
            ("D decode+resize, all cores, draft mode", D),
            ("C ceiling 1/(1/F+1/D)", C),
            ("E build-index end to end", E)]
    for name, v in rows:
        print(f"{name:<44}{v:>10.2f}")
    print(f"{'E/C (target >= 0.85)':<44}{E / C:>10.2f}")
    if B is not None:
        print(f"{'B img2vec per-image loop (baseline)':<44}{B:>10.2f}")
        print(f"{'E/B (target >= 3)':<44}{E / B:>10.2f}")


if __name__ == "__main__":
    main()
