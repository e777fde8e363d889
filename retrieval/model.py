"""AlexNet as in Krizhevsky, Sutskever and Hinton (NIPS 2012), and torchvision's variant.

Both architectures share one interface: ``forward_features`` (conv1..pool5, adaptive pool to
6x6, flattened), ``forward_head(x, pre_logits=True)`` (fc6, fc7: the 4096-d feature of
section 6.1), ``fc7`` (both, for a batch of images) and ``conv1_weight`` (for Figure 3).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig

__all__ = ["AlexNet", "ModelConfig", "PaperLRN", "count_parameters"]

# Section 3.3: local response normalisation b = a / (k + alpha * sum_{n neighbours} a^2)^beta.
LRN_SIZE = 5
LRN_K = 2.0
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
# Section 3.4: overlapping pooling, z = 3, s = 2.
POOL_KERNEL = 3
POOL_STRIDE = 2
# Section 5: weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5 and the hidden fc layers.
INIT_WEIGHT_STD = 0.01
FEATURE_DIM = 4096  # fc6 and fc7 width (section 3.5), at width 1
POOL5_SIZE = 6  # pool5 is 6x6x256 at 224x224 (the paper's 227 geometry, here through padding 2)
# Output channels of conv1..conv5 (section 3.5, Figure 2; torchvision's one-GPU variant).
PAPER_CHANNELS = (96, 256, 384, 384, 256)
TORCHVISION_CHANNELS = (64, 192, 384, 256, 256)


def _scaled(units: int, width: float) -> int:
    """``units`` x ``width``, rounded to an even number (>= 2), so that groups=2 splits it."""
    return max(2, 2 * round(units * width / 2))


class PaperLRN(nn.LocalResponseNorm):
    """The paper's response normalisation (section 3.3).

    torch's LocalResponseNorm computes a / (k + alpha/n * sum a^2)^beta: it divides alpha by
    the window size n, the paper does not, so alpha is multiplied by n here.
    """

    def __init__(self, size: int = LRN_SIZE, alpha: float = LRN_ALPHA, beta: float = LRN_BETA,
                 k: float = LRN_K) -> None:
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In float32 whatever the input: in bfloat16 (8-bit mantissa, under CUDA autocast)
        k + alpha * sum(a^2) rounds to k = 2 unless the sum passes ~80, so the normalisation
        would vanish. Returned in the input's dtype; a float32 input takes the plain path."""
        if x.dtype == torch.float32 and not _autocast(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type: CUDA's
        return device_type == "cuda" and torch.is_autocast_enabled()


def _paper_features(c: tuple[int, ...], groups: int) -> nn.Sequential:
    """c: conv1..conv5 channels, (96, 256, 384, 384, 256) at width 1; shapes at 224 below."""
    pool = lambda: nn.MaxPool2d(POOL_KERNEL, POOL_STRIDE)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, stride=4, padding=2),  # conv1: (B, 96, 55, 55)
        nn.ReLU(inplace=True),
        PaperLRN(),
        pool(),  # (B, 96, 27, 27)
        nn.Conv2d(c[0], c[1], 5, padding=2, groups=groups),  # conv2
        nn.ReLU(inplace=True),
        PaperLRN(),
        pool(),  # (B, 256, 13, 13)
        nn.Conv2d(c[1], c[2], 3, padding=1),  # conv3 sees both halves
        nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1, groups=groups),  # conv4
        nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1, groups=groups),  # conv5
        nn.ReLU(inplace=True),
        pool(),  # pool5: (B, 256, 6, 6)
    )


def _torchvision_features(c: tuple[int, ...]) -> nn.Sequential:
    # Same modules and indices as torchvision.models.AlexNet, so its state_dict loads as is.
    pool = lambda: nn.MaxPool2d(POOL_KERNEL, POOL_STRIDE)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, c[0], 11, stride=4, padding=2), nn.ReLU(inplace=True), pool(),
        nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True), pool(),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True),
        pool(),
    )


class AlexNet(nn.Module):
    """AlexNet with named ``features``, ``avgpool`` and ``classifier`` (torchvision's layout).

    ``arch="paper"``: the network of section 3.5 and Figure 2 (96 conv1 kernels, LRN after
    conv1 and conv2, dropout after fc6 and fc7), with ``groups=2`` for the two-GPU split.
    ``arch="torchvision"``: torchvision's one-GPU variant ("One weird trick", 64 conv1
    kernels, no LRN), whose ImageNet weights torchvision publishes.
    ``width`` scales every layer (1/16 gives a 0.2M-parameter network for tests).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        paper = config.arch == "paper"
        channels = PAPER_CHANNELS if paper else TORCHVISION_CHANNELS
        c = tuple(_scaled(n, config.width) for n in channels)
        #: units of fc6 and fc7: the dimension of the section 6.1 feature (4096 at width 1)
        self.feature_dim = d = _scaled(FEATURE_DIM, config.width)
        pool5 = c[4] * POOL5_SIZE**2
        if paper:
            self.features = _paper_features(c, config.groups)
            # fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8 (section 4.2)
            self.classifier = nn.Sequential(
                nn.Linear(pool5, d), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
                nn.Linear(d, d), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
                nn.Linear(d, config.num_classes),
            )
        else:
            self.features = _torchvision_features(c)
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(pool5, d), nn.ReLU(inplace=True),
                nn.Dropout(config.dropout), nn.Linear(d, d), nn.ReLU(inplace=True),
                nn.Linear(d, config.num_classes),
            )
        # Identity at 224x224 (pool5 is already 6x6); smaller inputs are brought up to 6x6.
        self.avgpool = nn.AdaptiveAvgPool2d(POOL5_SIZE)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Section 5's initialisation, or Kaiming-normal weights with zero biases."""
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        if self.config.init == "kaiming":
            for m in convs + linears:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            nn.init.normal_(linears[-1].weight, std=INIT_WEIGHT_STD)
            return
        # conv2, conv4, conv5, fc6, fc7: bias 1 "accelerates the early stages of learning by
        # providing the ReLUs with positive inputs"; conv1, conv3, fc8: bias 0.
        ones = {id(convs[1]), id(convs[3]), id(convs[4]), id(linears[0]), id(linears[1])}
        for m in convs + linears:
            nn.init.normal_(m.weight, std=INIT_WEIGHT_STD)
            nn.init.constant_(m.bias, 1.0 if id(m) in ones else 0.0)

    @property
    def conv1_weight(self) -> torch.Tensor:
        """The conv1 kernels, (96 or 64, 3, 11, 11): the paper's Figure 3."""
        return self.features[0].weight

    @property
    def fc8(self) -> nn.Linear:
        return self.classifier[-1]

    def replace_fc8(self, num_classes: int) -> None:
        """New output layer for ``num_classes`` (transfer learning), initialised as in section 5."""
        fc8 = nn.Linear(self.feature_dim, num_classes).to(self.fc8.weight.device)
        nn.init.normal_(fc8.weight, std=INIT_WEIGHT_STD)
        nn.init.zeros_(fc8.bias)
        self.classifier[-1] = fc8
        self.config.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 9216) flattened pool5 (256 x 6 x 6 at width 1)."""
        x = self.avgpool(self.features(x))  # (B, 256, 6, 6)
        return torch.flatten(x, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 9216) -> (B, num_classes) logits, or (B, feature_dim) fc7 after ReLU with
        pre_logits."""
        x = self.classifier[:-1](x)  # fc6, fc7 (+ dropout, identity in eval mode)
        return x if pre_logits else self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.inference_mode()
    def fc7(self, x: torch.Tensor) -> torch.Tensor:
        """The section 6.1 feature: (B, 3, H, W) -> (B, feature_dim) fc7 activations (4096
        at width 1), dropout off.

        The model must be in eval mode (dropout would otherwise zero half the units).
        """
        if self.training:
            raise RuntimeError("fc7 features need model.eval(): dropout is active in training")
        return self.forward_head(self.forward_features(x), pre_logits=True)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
