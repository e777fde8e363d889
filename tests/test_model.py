"""The paper's AlexNet: layer sizes, parameter counts, LRN, initialisation and fc7."""

import pytest
import torch
from torch import nn

from retrieval.model import AlexNet, ModelConfig, PaperLRN, count_parameters
from retrieval.weights import uninitialised_parameters

# Per layer, weights + biases (section 3.5, Figure 2), at 1000 classes.
PAPER_LAYERS_G1 = [96 * 3 * 121 + 96, 256 * 96 * 25 + 256, 384 * 256 * 9 + 384,
                   384 * 384 * 9 + 384, 256 * 384 * 9 + 256,
                   4096 * 9216 + 4096, 4096 * 4096 + 4096, 1000 * 4096 + 1000]


def shapes_only(**config) -> AlexNet:
    """The network without drawing its 60M initial values (for tests of shapes and counts)."""
    with uninitialised_parameters():
        return AlexNet(ModelConfig(**config))


def test_parameter_counts_match_the_paper_layer_by_layer():
    g1, g2 = shapes_only(groups=1), shapes_only(groups=2)
    layers = [m for m in g1.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [count_parameters(m) for m in layers] == PAPER_LAYERS_G1
    assert count_parameters(g1) == 62_378_344
    # groups=2 halves the inputs of conv2, conv4 and conv5 (each GPU sees its own maps).
    assert count_parameters(g2) == 62_378_344 - (256 * 48 * 25 + 384 * 192 * 9 + 256 * 192 * 9)
    assert count_parameters(g2) == 60_965_224


def test_torchvision_variant_matches_torchvision_alexnet():
    import torchvision

    ours, theirs = shapes_only(arch="torchvision"), torchvision.models.alexnet()
    assert count_parameters(ours) == count_parameters(theirs) == 61_100_840
    ours.load_state_dict(theirs.state_dict())  # identical keys and shapes
    x = torch.randn(2, 3, 224, 224)
    assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-5)


def test_lrn_is_the_papers_formula():
    a = torch.rand(2, 11, 4, 4) * 20
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(a)
    N = a.shape[1]
    for i in range(N):  # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        s = (a[:, lo:hi + 1] ** 2).sum(1)
        expected[:, i] = a[:, i] / (k + alpha * s) ** beta
    assert torch.allclose(PaperLRN()(a), expected, rtol=1e-5)
    # torch's own layer with the paper's numbers is a different function (alpha / n).
    assert not torch.allclose(nn.LocalResponseNorm(n, alpha, beta, k)(a), expected, rtol=1e-3)


@pytest.mark.parametrize("groups", [1, 2])
def test_shapes_at_224(groups):
    model = shapes_only(groups=groups).eval()
    x = torch.randn(1, 3, 224, 224)
    assert model.features[:1](x).shape == (1, 96, 55, 55)  # conv1
    assert model.features(x).shape == (1, 256, 6, 6)  # pool5
    assert model(x).shape == (1, 1000)


def test_small_inputs_reach_fc6_through_adaptive_pooling():
    model = shapes_only(num_classes=10).eval()
    for size in (64, 96, 128):
        assert model.forward_features(torch.randn(2, 3, size, size)).shape == (2, 9216)
        assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_initialisation_section_5():
    model = AlexNet(ModelConfig(groups=2))
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for m in convs + fcs:
        assert abs(m.weight.mean().item()) < 1e-3
        assert m.weight.std().item() == pytest.approx(0.01, rel=0.05)
    bias_one = [convs[1], convs[3], convs[4], fcs[0], fcs[1]]
    for m in convs + fcs:
        assert torch.all(m.bias == (1.0 if m in bias_one else 0.0))


def test_fc7_shape_nonnegative_and_deterministic_in_eval():
    model = AlexNet(ModelConfig(num_classes=4, init="kaiming")).eval()
    x = torch.randn(3, 3, 64, 64)
    a, b = model.fc7(x), model.fc7(x)
    assert a.shape == (3, 4096)
    assert torch.equal(a, b) and torch.all(a >= 0) and torch.isfinite(a).all()
    # fc7 is the input of fc8: the logits follow from it.
    with torch.inference_mode():
        assert torch.allclose(model.fc8(a), model(x), atol=1e-5)


def test_fc7_refuses_training_mode():
    with pytest.raises(RuntimeError, match="eval"):
        AlexNet(ModelConfig(num_classes=4, width=1 / 16)).train().fc7(torch.randn(1, 3, 64, 64))


def test_conv1_weight_is_the_first_layer():
    assert shapes_only().conv1_weight.shape == (96, 3, 11, 11)
    assert shapes_only(arch="torchvision").conv1_weight.shape == (64, 3, 11, 11)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="groups"):
        ModelConfig(groups=3)
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig(arch="vgg")


def test_one_training_step_of_the_papers_network():
    """SGD on one batch of the 60M-parameter network (what `retrieve train` runs per step)."""
    from retrieval.engine import train_one_epoch

    model = AlexNet(ModelConfig(num_classes=4, groups=2))
    before = model.classifier[0].weight.detach().clone()  # fc6
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = (torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3]), [])
    stats = train_one_epoch(model, [batch], opt, torch.device("cpu"), epoch=1, progress=False)
    assert stats.images == 4 and torch.isfinite(torch.tensor(stats.loss))
    assert not torch.equal(before, model.classifier[0].weight)


@pytest.mark.parametrize("arch", ["paper", "torchvision"])
def test_width_scales_every_layer_and_the_feature(arch):
    tiny = AlexNet(ModelConfig(arch=arch, num_classes=4, width=1 / 16)).eval()
    convs = [m.out_channels for m in tiny.features if isinstance(m, nn.Conv2d)]
    assert convs == ([6, 16, 24, 24, 16] if arch == "paper" else [4, 12, 24, 16, 16])
    assert tiny.feature_dim == 256 and tiny.fc7(torch.randn(2, 3, 64, 64)).shape == (2, 256)
    assert count_parameters(tiny) == (231_292 if arch == "paper" else 225_608)
    # channel counts stay even, so that the two-GPU grouping still splits every layer
    odd = AlexNet(ModelConfig(groups=2, width=0.3, num_classes=4)).eval()
    assert odd.fc7(torch.randn(1, 3, 64, 64)).shape == (1, odd.feature_dim)
    with pytest.raises(ValueError, match="width"):
        ModelConfig(width=0)
