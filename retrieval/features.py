"""fc7 feature extraction in batches: a DataLoader decodes images while the model runs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .errors import NotAnImage
from .images import load_image
from .model import FEATURE_DIM
from .weights import Weights

LAYER = "fc7"  # section 6.1: the last 4096-d hidden layer
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
PREFETCH_BATCHES = 2  # per worker: enough to keep the model busy, bounded memory


class ImageDataset(Dataset):
    """Paths -> (position, (3, S, S) tensor), or (position, None, reason) for a bad file.

    Errors are returned, not raised, so that one corrupt file does not stop the loader.
    """

    def __init__(self, paths: Sequence[str], transform, draft_size: int | None = None) -> None:
        self.paths, self.transform, self.draft_size = list(paths), transform, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = load_image(self.paths[i], draft_size=self.draft_size)
            return i, self.transform(img), None
        except NotAnImage as e:
            return i, None, e.reason
        except Exception as e:  # a transform failing on an odd image: skip it, say why
            return i, None, f"cannot be transformed ({type(e).__name__}: {str(e)[:100]})"


def collate_skipping_errors(samples):
    """-> (positions (b,) long, images (b, 3, S, S) or None, [(position, reason)])."""
    good = [(i, x) for i, x, _ in samples if x is not None]
    errors = [(i, reason) for i, x, reason in samples if x is None]
    positions = torch.tensor([i for i, _ in good], dtype=torch.long)
    images = torch.stack([x for _, x in good]) if good else None
    return positions, images, errors


class FeatureExtractor:
    """Turns image files into fc7 vectors with ``weights``, ``batch_size`` images at a time.

    Memory is bounded by the batch size (times the prefetch depth), whatever the number of
    images. channels_last on every device (measured faster on CPU too, see
    benchmarks/extract_throughput.py); on CUDA also pinned host memory, non-blocking copies.
    """

    def __init__(self, weights: Weights, batch_size: int = 64, workers: int = DEFAULT_WORKERS,
                 device: torch.device | str = "cpu", progress: bool = False) -> None:
        self.weights, self.batch_size, self.workers = weights, batch_size, workers
        self.device = torch.device(device)
        self.progress = progress
        self.cuda = self.device.type == "cuda"
        self.model = weights.model.to(self.device).eval().to(memory_format=torch.channels_last)

    def identity(self) -> dict:
        """What the vectors depend on, for the index manifest and the query-time checks."""
        return {
            "weights": self.weights.source, "sha256": self.weights.sha256, "layer": LAYER,
            "dim": FEATURE_DIM, "transform": self.weights.preprocess.describe(),
            "model": asdict(self.model.config),
            "weights_stamp": self.weights.stamp,  # lets a query skip hashing the same file again
        }

    def loader(self, paths: Sequence[str]) -> DataLoader:
        dataset = ImageDataset(paths, self.weights.transform,
                               draft_size=self.weights.preprocess.resize_size)
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
            collate_fn=collate_skipping_errors, pin_memory=self.cuda,
            prefetch_factor=PREFETCH_BATCHES if self.workers > 0 else None,
            persistent_workers=False)

    def embed(self, paths: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list]]:
        """Per batch: (positions in ``paths`` that decoded, (b, 4096) float32 C-contiguous
        fc7 vectors in that order, [(path, reason)] for the files that did not)."""
        paths = [str(p) for p in paths]
        bar = tqdm(total=len(paths), unit="images", disable=not self.progress, dynamic_ncols=True,
                   desc="fc7", leave=False)
        try:
            for positions, images, errors in self.loader(paths):
                named = [(paths[i], reason) for i, reason in errors]
                if images is None:
                    yield [], np.zeros((0, FEATURE_DIM), np.float32), named
                else:
                    yield positions.tolist(), self._fc7(images), named
                bar.update(len(positions) + len(errors))
        finally:
            bar.close()

    def _fc7(self, images: torch.Tensor) -> np.ndarray:
        images = images.to(self.device, non_blocking=self.cuda, memory_format=torch.channels_last)
        x = self.model.fc7(images)  # (b, 4096), inference_mode, dropout off
        return np.ascontiguousarray(x.float().cpu().numpy(), dtype=np.float32)


def weights_for(identity: dict, device: torch.device | str = "cpu") -> Weights:
    """Load the weights an index's manifest names; refuse missing or changed files.

    ``identity``: what ``FeatureExtractor.identity()`` recorded (weights, sha256, ...).
    """
    from .errors import IndexMismatch, WeightsError
    from .weights import IMAGENET, load_weights

    source = identity.get("weights")
    if not source:
        raise WeightsError("the index records no weights; rebuild it with build-index --rebuild")
    if source != IMAGENET and not os.path.isfile(source):
        raise WeightsError(f"{source}: the weights this index was built with are missing; restore "
                           "the file, or rebuild the index with build-index --weights CKPT --rebuild")
    stamp = identity.get("weights_stamp")
    weights = load_weights(source, device, (stamp, identity["sha256"]) if stamp else None)
    if weights.sha256 != identity.get("sha256"):
        raise IndexMismatch(f"{source}: the weights changed since the index was built (sha256 "
                            f"{weights.sha256[:12]}... instead of {str(identity.get('sha256'))[:12]}...); "
                            "rebuild the index with build-index --rebuild")
    if identity.get("layer", LAYER) != LAYER:
        raise IndexMismatch(f"the index holds {identity['layer']} vectors; this retrieve makes {LAYER}")
    return weights
