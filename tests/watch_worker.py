"""A `build-index --watch` without the network, for tests/test_watch.py: run as
`python tests/watch_worker.py PHOTOS INDEX QUIET_MS`, it watches PHOTOS into INDEX with
vectors made from each file's bytes, printing `new changed removed skipped total` for each
build that changed the index."""

import sys
import zlib

import numpy as np

from indexes.build.watch import watch_index
from indexes.config import BuildConfig
from retrieval.walk import find_images

DIM = 8


class BytesExtractor:
    """Each file's 'fc7': seeded by its bytes, so that a changed file gets a new vector."""

    def identity(self) -> dict:
        return {"weights": "bytes", "sha256": "b" * 64, "layer": "fc7", "dim": DIM,
                "transform": {}, "model": {}}

    def embed(self, paths):
        x = [np.random.default_rng(zlib.crc32(open(p, "rb").read())).standard_normal(DIM)
             for p in paths]
        yield list(range(len(paths))), np.asarray(x, np.float32).reshape(-1, DIM), []


def said(generation) -> None:
    r = generation.report
    if generation.first or r.new or r.changed or r.removed:  # as build-index --watch says
        print(r.new, r.changed, r.removed, len(r.skipped), r.total, flush=True)


if __name__ == "__main__":
    photos, index, quiet_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    watch_index(index, [photos], lambda: find_images([photos], exclude=[index]), BytesExtractor(),
                BuildConfig(), said, quiet_ms=quiet_ms)
