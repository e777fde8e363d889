"""How close is close in one index: the distance from a sample of its images to their nearest
other image, by which any distance reads as a share ("closer than 87% of the images' nearest
neighbours"); `duplicates` measures the same distances when it calibrates its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexes.store import faiss_ops
from indexes.store.store import IndexStore

# Indexed images whose nearest other image makes the scale: a share read off it is within
# ~3 points of the whole index's (the binomial standard error at 50%, sqrt(.25 / 256)), and a
# Flat index of n images pays 256 searches once per generation.
SAMPLE = 256


def nearest_other(store: IndexStore, ids: np.ndarray, nprobe: int | None = None) -> np.ndarray:
    """The Euclidean distance (n,) from each of the indexed images ``ids`` to its nearest
    other indexed image (0 for one with an exact copy; inf in an index of one image)."""
    ids = np.asarray(ids, dtype=np.int64)
    D, I = store.search(faiss_ops.stored_vectors(store.load_index(mmap=True), ids), 2, nprobe)
    # An image is usually its own nearest; a copy at distance 0 may come before it.
    if D.shape[1] < 2:  # an index of one image
        D = np.hstack([D, np.full((len(ids), 1), np.inf)])
        I = np.hstack([I, np.full((len(ids), 1), -1)])
    second = np.where(I[:, 1] >= 0, D[:, 1], np.inf)
    return np.where(I[:, 0] == ids, second, D[:, 0])


@dataclass(frozen=True)
class Scale:
    """The sorted nearest-other distances of a sample of one generation's images."""

    generation: int
    nearest: np.ndarray  # (n,) ascending, finite

    def closer_than(self, distance: float) -> float | None:
        """The share (0 to 1) of the sampled images whose nearest other image is farther
        than ``distance``: 1 for closer than any, 0.5 for a typical nearest neighbour."""
        if not len(self.nearest):
            return None
        farther = len(self.nearest) - np.searchsorted(self.nearest, distance, side="right")
        return float(farther / len(self.nearest))


def measure(store: IndexStore, sample: int = SAMPLE, seed: int = 0) -> Scale:
    """The scale of ``store``'s committed generation, from up to ``sample`` of its images
    (seeded: the same index gives the same scale)."""
    ids = np.fromiter((i for i, in store.select("SELECT id FROM items ORDER BY id")), np.int64)
    chosen = np.random.default_rng(seed).permutation(ids)[:sample]
    nearest = nearest_other(store, chosen) if len(chosen) else np.zeros(0)
    return Scale(store.generation, np.sort(nearest[np.isfinite(nearest)]))
