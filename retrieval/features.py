"""fc7 feature extraction in batches: a DataLoader decodes images while the model runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import gpu_decode
from .config import ExtractConfig, loader_workers
from .copies import COPY_KINDS, copies
from .data import collate_skipping
from .errors import NotAnImage, RetrieveError
from .images import load_image
from .weights import Weights, load_weights, resolve_device

LAYER = "fc7"  # section 6.1: the last hidden layer, 4096 units in the paper's network
PREFETCH_BATCHES = 2  # per worker: enough to keep the model busy, bounded memory
# Copies per forward pass in `duplicates`' calibration: 16 images' five. One at a time, the
# fully connected layers' 54M weights were read for each image: 33 s of 40 for 100 images.
COPY_BATCH = 80


@contextmanager
def full_float32() -> Iterator[None]:
    """cuDNN convolutions and cuBLAS products in IEEE float32 meanwhile, not TF32 (10-bit
    mantissas: ~1e-3 relative on fc7, on by default for cuDNN): vectors extracted on a GPU
    then stay within float32 rounding of the CPU's, and an image found again on the other
    device is at ~0 from itself. AlexNet's forward is far from the GPU's float32 limit."""
    cudnn, cublas = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, cublas.allow_tf32
    cudnn.allow_tf32 = cublas.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, cublas.allow_tf32 = saved


class ImageDataset(Dataset):
    """Paths -> ((3, S, S) tensor, position, None), or (None, position, reason) for a bad file
    (``data.collate_skipping``'s samples). Errors are returned, not raised, so that one
    corrupt file does not stop the loader."""

    def __init__(self, paths: Sequence[str], transform, draft_size: int | None = None) -> None:
        self.paths, self.transform, self.draft_size = list(paths), transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = load_image(self.paths[i], draft_size=self.draft_size)
            return self.transform(img), i, None
        except NotAnImage as e:
            return None, i, e.reason
        except Exception as e:  # a transform failing on an odd image: skip it, say why
            return None, i, f"cannot be transformed ({type(e).__name__}: {str(e)[:100]})"


class FeatureExtractor:
    """Turns image files into fc7 vectors with ``weights``, ``config.batch_size`` images at a
    time, on ``config.device``.

    Memory is bounded by the batch size (times the prefetch depth), whatever the number of
    images. channels_last on every device (measured faster on CPU too, see
    benchmarks/extract_throughput.py); on CUDA also pinned host memory, non-blocking copies,
    float32 without TF32 (``full_float32``) and, with ``config.gpu_decode``, JPEGs decoded by
    nvJPEG (``retrieval.gpu_decode``).
    """

    def __init__(self, weights: Weights, config: ExtractConfig | None = None,
                 progress: bool = False) -> None:
        self.weights, self.config = weights, config or ExtractConfig()
        self.device = resolve_device(self.config.device)
        self.progress = progress
        self.cuda = self.device.type == "cuda"
        self.gpu_decode = self.config.gpu_decode
        if self.gpu_decode and not self.cuda:
            raise RetrieveError("--gpu-decode decodes on the GPU (nvJPEG): it needs --device cuda "
                                "and a CUDA GPU")
        self.model = weights.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.dim = self.model.feature_dim

    @classmethod
    def load(cls, source: str, trusted: tuple[list[int], str] | None = None,
             config: ExtractConfig | None = None, progress: bool = False) -> "FeatureExtractor":
        """An extractor with the weights ``source`` names (a checkpoint or ``imagenet``);
        ``trusted``: a (stamp, sha256) recorded earlier, see ``weights.read_digested``."""
        config = config or ExtractConfig()
        return cls(load_weights(source, resolve_device(config.device), trusted), config, progress)

    def identity(self) -> dict:
        """What the vectors depend on, for the index manifest and the query-time checks."""
        return {
            "weights": self.weights.source, "sha256": self.weights.sha256, "layer": LAYER,
            "dim": self.dim, "transform": self.weights.preprocess.describe(),
            "model": asdict(self.model.config),
            "weights_stamp": self.weights.stamp,  # lets a query skip hashing the same file again
        }

    def loader(self, paths: Sequence[str]) -> DataLoader:
        kind = gpu_decode.EncodedImages if self.gpu_decode else ImageDataset
        dataset = kind(paths, self.weights.transform, self.weights.preprocess.resize_size)
        workers = self.config.workers
        if workers is None:
            workers = loader_workers(self.cuda)
        return DataLoader(
            dataset, batch_size=self.config.batch_size, shuffle=False, num_workers=workers,
            collate_fn=gpu_decode.collate if self.gpu_decode else collate_skipping,
            pin_memory=self.cuda, prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
            persistent_workers=False)

    def batches(self, paths: Sequence[str]) -> Iterator[tuple]:
        """``collate_skipping``'s (images or None, positions, [(position, reason)]) per batch,
        the images decoded on the GPU with ``gpu_decode``."""
        pre = self.weights.preprocess
        for batch in self.loader(paths):
            yield (gpu_decode.decode(batch, pre, self.weights.transform, self.device)
                   if self.gpu_decode else batch)

    def embed(self, paths: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list]]:
        """Per batch: (positions in ``paths`` that decoded, (b, dim) float32 C-contiguous
        fc7 vectors in that order, [(path, reason)] for the files that did not)."""
        paths = [str(p) for p in paths]
        bar = tqdm(total=len(paths), unit="images", disable=not self.progress, dynamic_ncols=True,
                   desc="fc7", leave=False)
        try:
            for images, positions, errors in self.batches(paths):
                named = [(paths[i], reason) for i, reason in errors]
                if images is None:
                    yield [], np.zeros((0, self.dim), np.float32), named
                else:
                    yield positions.tolist(), self._fc7(images), named
                bar.update(len(positions) + len(errors))
        finally:
            bar.close()

    def prepare(self, source) -> torch.Tensor:
        """One image (a path or a binary file object) as the network's (3, S, S) input, by
        the same decode and eval transform as ``embed``; NotAnImage when it is not one."""
        img = load_image(source, draft_size=self.weights.preprocess.resize_size)
        return self.weights.transform(img)

    def copy_vectors(self, sources: Sequence) -> list[np.ndarray | None]:
        """For each image, fc7 vectors (len(COPY_KINDS), dim) of the copies
        ``retrieval.copies`` makes of it (resized, recompressed, ...), None for one that
        cannot be read; the copies of several images in each forward pass (the fully
        connected layers' weights are read once per pass), for `retrieve duplicates`'
        calibration."""
        out: list[np.ndarray | None] = [None] * len(sources)
        per_pass = max(1, COPY_BATCH // len(COPY_KINDS))
        for start in range(0, len(sources), per_pass):
            tensors, owners = [], []
            for i in range(start, min(start + per_pass, len(sources))):
                try:
                    made = copies(load_image(sources[i]))
                except NotAnImage:
                    continue
                tensors += [self.weights.transform(c) for _, c in made]
                owners.append(i)
            if owners:
                x = self.vectors(tensors).reshape(len(owners), len(COPY_KINDS), -1)
                for i, v in zip(owners, x):
                    out[i] = v
        return out

    def vectors(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """``prepare``d images -> (n, dim) float32 fc7 vectors, in one forward pass."""
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        return self._fc7(torch.stack(list(images)))

    def _fc7(self, images: torch.Tensor) -> np.ndarray:
        images = images.to(self.device, non_blocking=self.cuda, memory_format=torch.channels_last)
        with full_float32():
            x = self.model.fc7(images)  # (b, dim), inference_mode, dropout off
        return np.ascontiguousarray(x.float().cpu().numpy(), dtype=np.float32)

