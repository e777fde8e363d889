"""The network an index was built with, loaded to embed queries (shared by query and evaluate)."""

from __future__ import annotations

from indexes.build import DEFAULT_WORKERS
from indexes.store import IndexStore


def extractor_for(store: IndexStore, device: str, batch_size: int, images: int,
                  progress: bool = False):
    """A FeatureExtractor with the weights ``store`` records (checked against their sha256).

    Worker processes only pay off for more than one batch of ``images``.
    """
    from retrieval.features import FeatureExtractor, weights_for
    from retrieval.weights import resolve_device

    dev = resolve_device(device)
    return FeatureExtractor(weights_for(store.settings, dev), batch_size,
                            workers=0 if images <= batch_size else DEFAULT_WORKERS, device=dev,
                            progress=progress)


def collect(extractor):
    """``extractor.embed`` as one call: paths -> (float32 (n_ok, 4096), positions, errors)."""
    import numpy as np

    def embed(paths):
        chunks, positions, errors = [], [], []
        for pos, x, errs in extractor.embed(paths):
            chunks.append(x)
            positions += pos
            errors += errs
        xb = np.concatenate(chunks) if chunks else np.zeros((0, 4096), np.float32)
        return np.ascontiguousarray(xb, dtype=np.float32), positions, errors

    return embed
