"""The sha256 and the stamp of a weights file: what ties an index, and its ONNX export, to them.

Torch-free, so that a query answered through ONNX Runtime checks the weights exactly as one
that loads them into torch (``weights.read_digested``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .config import IMAGENET

# torchvision's AlexNet_Weights.IMAGENET1K_V1 file, as torch.hub caches it (tested equal).
IMAGENET_FILE = "alexnet-owt-7be5be79.pth"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: str | os.PathLike) -> list[int]:
    """Device, inode, size, mtime and ctime (ns): any write to the file, or a file put in its
    place, changes at least one of them (ctime cannot be set back the way mtime can)."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def current_sha256(path: str | os.PathLike, trusted: tuple[list[int], str] | None = None
                   ) -> tuple[str, list[int]]:
    """(sha256, stamp) of the file at ``path`` as it is now: the ``trusted`` sha256 when the
    file's stamp still equals the one recorded with it, else hashed again."""
    stamp = file_stamp(path)
    if trusted is not None and stamp == list(trusted[0]):
        return trusted[1], stamp
    sha256 = sha256_file(path)
    return sha256, file_stamp(path)


def weights_file(source: str) -> Path:
    """The file a weights source names: a checkpoint's path, or for ``imagenet`` where
    torch.hub caches torchvision's file ($TORCH_HOME/hub/checkpoints, $TORCH_HOME defaulting
    to $XDG_CACHE_HOME/torch, then ~/.cache/torch: torch.hub.get_dir's rule, without torch)."""
    if source != IMAGENET:
        return Path(source)
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return Path(home) / "hub" / "checkpoints" / IMAGENET_FILE
