"""One transform factory for training and extraction (Krizhevsky et al. 2012, section 4.1).

Every pipeline starts from an RGB PIL image (see ``retrieval.images.load_image``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import transforms as T

from .config import IMAGE_SIZE

# Section 4.1: images are scaled so the shorter side is 256 and 224x224 patches are cut out;
# for other input sizes the same 256/224 ratio is kept.
RESIZE_RATIO = 256 / 224
# Section 4.1: PCA colour augmentation, alpha ~ N(0, 0.1).
PCA_ALPHA_STD = 0.1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eigen-pairs of ImageNet's RGB pixel covariance (pixels in [0, 1]), as used by fb.resnet.torch.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass
class Preprocess:
    """Everything needed to turn an image into the network's input; stored with the weights.

    ``eigval``/``eigvec`` are the eigen-pairs of the training pixels' RGB covariance (columns
    of ``eigvec`` are eigenvectors), used only by training's PCA colour augmentation.
    """

    image_size: int = IMAGE_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    eigval: tuple[float, ...] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, ...], ...] = IMAGENET_EIGVEC

    @property
    def resize_size(self) -> int:
        return round(self.image_size * RESIZE_RATIO)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            image_size=int(d["image_size"]),
            mean=tuple(d["mean"]), std=tuple(d["std"]),
            eigval=tuple(d.get("eigval", IMAGENET_EIGVAL)),
            eigvec=tuple(tuple(r) for r in d.get("eigvec", IMAGENET_EIGVEC)),
        )

    def describe(self) -> dict:
        """The deterministic eval transform, as recorded in an index manifest."""
        return {"resize": self.resize_size, "center_crop": self.image_size,
                "mean": list(self.mean), "std": list(self.std)}


class PCALighting(torch.nn.Module):
    """Section 4.1: add sum_i alpha_i * lambda_i * p_i to every pixel, alpha_i ~ N(0, std).

    Works on (3, H, W) tensors in [0, 1], before normalisation.
    """

    def __init__(self, eigval, eigvec, alpha_std: float = PCA_ALPHA_STD) -> None:
        super().__init__()
        self.alpha_std = alpha_std
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32))  # (3,)
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32))  # (3, 3)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.alpha_std == 0:
            return img
        alpha = torch.randn(3) * self.alpha_std
        rgb = self.eigvec @ (alpha * self.eigval)  # (3,)
        return img + rgb.view(3, 1, 1)


def create_transform(pre: Preprocess, is_training: bool = False, *, flip: bool = True,
                     pca_lighting: bool = True, random_crop: bool = True) -> T.Compose:
    """Build the training pipeline (section 4.1) or the deterministic eval one.

    Eval: shorter side to ``resize_size``, centre ``image_size`` square, normalise.
    Training: shorter side to ``resize_size``, centre square, random ``image_size`` crop and
    horizontal flip, PCA lighting, normalise; each augmentation can be switched off.
    """
    steps: list = [T.Resize(pre.resize_size, antialias=True)]
    if is_training:
        steps.append(T.CenterCrop(pre.resize_size))
        steps.append(T.RandomCrop(pre.image_size) if random_crop else T.CenterCrop(pre.image_size))
        if flip:
            steps.append(T.RandomHorizontalFlip())
        steps.append(T.ToTensor())
        if pca_lighting:
            steps.append(PCALighting(pre.eigval, pre.eigvec))
    else:
        steps += [T.CenterCrop(pre.image_size), T.ToTensor()]
    steps.append(T.Normalize(pre.mean, pre.std))
    return T.Compose(steps)


class _StackCrops:
    """(PIL crops) -> (n, 3, S, S) normalised tensor; a class, so DataLoader workers can pickle it."""

    def __init__(self, mean, std) -> None:
        self.normalize = T.Normalize(mean, std)

    def __call__(self, crops) -> torch.Tensor:
        return torch.stack([self.normalize(T.functional.to_tensor(c)) for c in crops])


def ten_crop_transform(pre: Preprocess) -> T.Compose:
    """Section 4.1's test: the four corner and centre crops and their flips -> (10, 3, S, S)."""
    return T.Compose([
        T.Resize(pre.resize_size, antialias=True),
        T.CenterCrop(pre.resize_size),
        T.TenCrop(pre.image_size),
        _StackCrops(pre.mean, pre.std),
    ])
