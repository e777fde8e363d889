"""fc7 without torch: an index's ONNX export run by ONNX Runtime, for quick queries.

A query of a few images spent most of its time importing torch and torchvision. Here the
network is the graph `build-index` exported into the index (retrieval.onnx_export), found by
the sha256 of the weights file as it is now, and the images go through the eval transform in
Pillow and numpy. Whatever is missing (no export, no ONNX Runtime, a GPU asked for, more
images than a batch) leaves the query to torch, which refuses changed weights as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .config import ExtractConfig
from .digest import current_sha256, weights_file
from .errors import NotAnImage
from .images import load_image

EXPORTS = "onnx"  # INDEX/onnx/<sha256 of the weights file>/ holds the files below
GRAPH = "fc7.onnx"
DATA = "fc7.onnx.data"  # the weights beside the graph: ONNX Runtime maps them, no copy
DESCRIPTION = "fc7.json"  # weights, sha256, layer, dim, transform, model
FORMAT = "retrieve-fc7-onnx"
VERSION = 1
INPUT, OUTPUT = "images", "fc7"
QUICK_DEVICES = ("auto", "cpu")  # ONNX Runtime here runs on the CPU; a GPU asked for: torch


def export_dir(index: str | os.PathLike, sha256: str) -> Path:
    """Where the export of the weights with this sha256 lives in an index folder."""
    return Path(index) / EXPORTS / sha256


def open_session(folder: Path):
    """An ONNX Runtime session of the graph in ``folder``, on the CPU.

    Pre-packing (copying the fc6/fc7 matrices into another layout) is off: it took ~0.3 s of
    a 0.4 s start, and the single forward of a query measured no faster with it. Spinning is
    off too: ONNX Runtime's threads would go on busy-waiting for work that never comes, taking
    the CPU from the search (and from torch, in build-index's check of the export).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a query prints nothing of its own
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(folder / GRAPH), options, providers=["CPUExecutionProvider"])


def eval_array(img: Image.Image, transform: dict) -> np.ndarray:
    """(3, S, S) float32: transforms.create_transform(pre, is_training=False) in Pillow and
    numpy, equal to it (tested): shorter side to ``resize`` (bilinear, the longer one
    truncated as torchvision does), centre ``center_crop`` square, /255, normalised.
    ``transform`` is ``Preprocess.describe()``, as an index manifest records it."""
    size, crop = transform["resize"], transform["center_crop"]
    w, h = img.size
    long = int(size * max(w, h) / min(w, h))
    new = (size, long) if w <= h else (long, size)
    if new != (w, h):
        img = img.resize(new, Image.Resampling.BILINEAR)
    top, left = int(round((new[1] - crop) / 2.0)), int(round((new[0] - crop) / 2.0))
    x = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255
    mean = np.asarray(transform["mean"], dtype=np.float32)
    std = np.asarray(transform["std"], dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


class OnnxExtractor:
    """``features.FeatureExtractor``'s ``identity`` and ``embed`` over an ONNX export."""

    def __init__(self, session, description: dict, source: str, sha256: str,
                 stamp: list[int], batch_size: int) -> None:
        self.session, self.description = session, description
        self.source, self.sha256, self.stamp = source, sha256, stamp
        self.batch_size, self.dim = batch_size, int(description["dim"])

    def identity(self) -> dict:
        d = self.description
        return {"weights": self.source, "sha256": self.sha256, "layer": d["layer"],
                "dim": self.dim, "transform": d["transform"], "model": d["model"],
                "weights_stamp": self.stamp}

    def _prepare(self, path: str) -> np.ndarray | str:
        """The network's input for one file, or why it has none (FeatureExtractor's reasons)."""
        transform = self.description["transform"]
        try:
            return eval_array(load_image(path, draft_size=transform["resize"]), transform)
        except NotAnImage as e:
            return e.reason
        except Exception as e:  # a transform failing on an odd image: skip it, say why
            return f"cannot be transformed ({type(e).__name__}: {str(e)[:100]})"

    def embed(self, paths: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list]]:
        """Per batch: (positions in ``paths`` that decoded, (b, dim) float32 fc7 vectors,
        [(path, reason)] of the files that did not)."""
        paths = [str(p) for p in paths]
        for start in range(0, len(paths), self.batch_size):
            ok, images, errors = [], [], []
            for i in range(start, min(start + self.batch_size, len(paths))):
                x = self._prepare(paths[i])
                if isinstance(x, str):
                    errors.append((paths[i], x))
                else:
                    ok.append(i)
                    images.append(x)
            if not images:
                yield [], np.zeros((0, self.dim), np.float32), errors
                continue
            fc7 = self.session.run([OUTPUT], {INPUT: np.stack(images)})[0]
            yield ok, np.ascontiguousarray(fc7, dtype=np.float32), errors


def open_export(index: str | os.PathLike, source: str, trusted,
                config: ExtractConfig) -> OnnxExtractor | None:
    """The quick extractor of ``index`` for the weights ``source`` as the file is now, or
    None when torch must answer: no export of these exact weights (changed, or never
    exported), no ONNX Runtime, a GPU asked for, or more images than one batch (decoding
    processes, ``ExtractConfig.for_queries``). ``trusted``: the (stamp, sha256) recorded."""
    if config.device not in QUICK_DEVICES or config.workers != 0:  # None: the loader's own
        return None
    path = weights_file(source)
    try:
        sha256, stamp = current_sha256(path, trusted)
        folder = export_dir(index, sha256)
        description = json.loads((folder / DESCRIPTION).read_text())
        t = description["transform"]
        if ((description.get("format"), description.get("version"), description.get("sha256"))
                != (FORMAT, VERSION, sha256) or t["resize"] < t["center_crop"]):
            return None  # not ours, or a crop eval_array would pad otherwise than torchvision
        session = open_session(folder)
    except Exception:  # missing or damaged files, no onnxruntime: torch answers instead
        return None
    return OnnxExtractor(session, description, source, sha256, stamp, config.batch_size)


def load_extractor(index: str | os.PathLike, source: str, trusted,
                   config: ExtractConfig | None = None):
    """What a query of ``index`` embeds with (``indexes.search.searcher.LoadExtractor``): the
    ONNX export when ``open_export`` finds one, else ``FeatureExtractor.load`` (torch).
    ``config`` defaults to a few images decoded in this process, on the CPU or a GPU."""
    config = config or ExtractConfig(workers=0)
    quick = open_export(index, source, trusted, config)
    if quick is not None:
        return quick
    from .features import FeatureExtractor

    return FeatureExtractor.load(source, trusted, config)
