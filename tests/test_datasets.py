"""The built-in data sets: drawn shapes and Fashion-MNIST from local files."""

import gzip

import numpy as np
import pytest
from PIL import Image

from retrieval.datasets import (DEBIAN_FASHION_MNIST, SHAPE_CLASSES, class_folder_name,
                                export_fashion_mnist, fashion_mnist_root, make_shapes)


def test_shapes_are_an_image_folder_and_deterministic(tmp_path):
    a = make_shapes(tmp_path / "a", per_class=2, size=48, seed=3, classes=4)
    b = make_shapes(tmp_path / "b", per_class=2, size=48, seed=3, classes=4)
    assert sorted(p.parent.name for p in a) == sorted(list(SHAPE_CLASSES[:4]) * 2)
    for pa, pb in zip(a, b):
        assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))
        assert Image.open(pa).size == (48, 48) and Image.open(pa).mode == "RGB"
    with pytest.raises(ValueError):
        make_shapes(tmp_path / "c", per_class=1, classes=1)


def test_class_names_become_safe_folder_names():
    assert class_folder_name("T-shirt/top") == "T-shirt-top"


def _write_idx(folder, n=6):
    """Four tiny IDX files in Debian's .gz form: n images of 28x28, labels 0..n-1."""
    folder.mkdir(parents=True)
    images = np.arange(n * 28 * 28, dtype=np.uint32).reshape(n, 28, 28) % 256
    header = lambda magic, *dims: np.array([magic, *dims], dtype=">i4").tobytes()  # noqa: E731
    for split in ("train", "t10k"):
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header(2051, n, 28, 28) + images.astype(np.uint8).tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(header(2049, n) + np.arange(n, dtype=np.uint8).tobytes())
    return images.astype(np.uint8)


def test_fashion_mnist_from_bare_gz_files_exports_pngs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = _write_idx(tmp_path / "idx")
    root = fashion_mnist_root(tmp_path / "idx")
    assert (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    paths = export_fashion_mnist(tmp_path / "out", per_class=1, data_root=tmp_path / "idx")
    assert len(paths) == 6 and paths[0].parent.name == "T-shirt-top"
    assert np.array_equal(np.asarray(Image.open(paths[3])), images[3])


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = export_fashion_mnist(tmp_path / "fm", per_class=2, train=False)
    assert len(paths) == 20 and Image.open(paths[0]).size == (28, 28)
