"""show-kernels: grid geometry, normalisation, nearest-neighbour upscaling and the CLI."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from retrieval.kernels import BLOCK_GAP, TILE_PADDING, kernel_grid, normalize_kernels, save_kernels
from retrieval.model import AlexNet, ModelConfig
from retrieval.transforms import Preprocess
from retrieval.weights import Weights, save_checkpoint

K = 11  # conv1 kernel size
# A quarter of the paper's width: 24 conv1 kernels (16 for torchvision's), enough for a grid
# of several rows, in a 14 MB checkpoint.
QUARTER = 1 / 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(**config) -> (path, conv1 weights): written once per config."""
    made = {}

    def make(**config):
        key = tuple(sorted(config.items()))
        if key not in made:
            torch.manual_seed(len(made))
            model = AlexNet(ModelConfig(num_classes=4, width=QUARTER, **config))
            path = tmp_path_factory.mktemp("ckpt") / "model.pt"
            save_checkpoint(path, model, Preprocess(image_size=64), ["a", "b", "c", "d"])
            made[key] = path, model.conv1_weight.detach().clone()
        return made[key]

    return make


@pytest.fixture(scope="module")
def paper_sheet(tmp_path_factory):
    """The paper's two-GPU network (in memory, not saved) drawn as Figure 3 at scale 2."""
    model = AlexNet(ModelConfig(groups=2))
    out = tmp_path_factory.mktemp("paper") / "kernels.png"
    sheet = save_kernels(Weights(model, Preprocess(), "in memory", "0" * 64), out, scale=2)
    return sheet, model.conv1_weight.detach().clone()


def expected_size(rows, cols, scale, blocks=1):
    """(width, height) from make_grid's layout: padding before every tile and after the last."""
    tile = K * scale
    width = cols * (tile + TILE_PADDING) + TILE_PADDING
    block_h = rows * (tile + TILE_PADDING) + TILE_PADDING
    return width, blocks * block_h + (blocks - 1) * BLOCK_GAP


def run(*args):
    return CliRunner().invoke(cli, ["show-kernels", *map(str, args)])


def tile(img, scale, row, col, top=0):
    """The pixels of the tile at (row, col) of a block starting ``top`` pixels down."""
    step = K * scale + TILE_PADDING
    y, x = top + TILE_PADDING + row * step, TILE_PADDING + col * step
    return img[y:y + K * scale, x:x + K * scale]


@pytest.mark.parametrize("config, scale, lines", [
    (dict(groups=1), 4, "24 conv1 kernels of 11x11, 1 block of 3x8 tiles"),
    (dict(groups=2), 3, "24 conv1 kernels of 11x11, 2 blocks of 2x8 tiles"),
    (dict(arch="torchvision"), 2, "16 conv1 kernels of 11x11, 1 block of 2x8 tiles"),
])
def test_cli_writes_a_png_of_the_expected_grid(checkpoint, tmp_path, config, scale, lines):
    ckpt, _ = checkpoint(**config)
    out = tmp_path / "sheet.png"
    result = run("--weights", ckpt, "--out", out, "--scale", scale)
    assert result.exit_code == 0, result.output
    blocks = config.get("groups", 1)
    rows = {1: 3, 2: 2}[blocks] if config.get("arch") != "torchvision" else 2
    w, h = expected_size(rows, 8, scale, blocks)
    assert result.output == f"Wrote {out}: {lines}, {w}x{h}px\n"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (w, h)


def test_the_papers_96_kernels_are_two_blocks_of_48(paper_sheet):
    sheet, _ = paper_sheet
    assert (sheet.tiles, sheet.kernel_size, sheet.blocks, sheet.rows, sheet.cols) == \
        (96, (11, 11), 2, 6, 8)
    assert sheet.size == expected_size(6, 8, 2, blocks=2)


def test_per_kernel_normalisation_maps_each_kernel_to_the_full_range(paper_sheet):
    sheet, weight = paper_sheet
    scale = 2
    img = np.asarray(Image.open(sheet.path).convert("RGB")).astype(int)
    block_h = expected_size(6, 8, scale)[1] + BLOCK_GAP
    for k in (0, 13, 47, 48, 95):  # both blocks: 0-47 above (GPU 1), 48-95 below (GPU 2)
        block, i = divmod(k, 48)
        t = tile(img, scale, i // 8, i % 8, top=block * block_h)
        pixels = t[::scale, ::scale]  # (11, 11, 3): one sample per kernel weight
        assert pixels.min() == 0 and pixels.max() == 255
        w = weight[k].permute(1, 2, 0).numpy().astype(np.float64)  # (11, 11, 3) like the PNG
        want = (w - w.min()) / (w.max() - w.min()) * 255
        np.testing.assert_allclose(pixels, want, atol=0.51)
    # the separators between tiles and blocks are white
    assert (img[:TILE_PADDING] == 255).all()
    assert (img[block_h - BLOCK_GAP:block_h] == 255).all()


def test_shared_normalisation_uses_one_range_for_all_kernels():
    weight = torch.randn(4, 3, K, K)
    weight[1] *= 0.1  # a weak kernel stays dim when the range is shared
    shared = normalize_kernels(weight, "shared")
    assert shared.min() == 0 and shared.max() == 1
    want = (weight - weight.min()) / (weight.max() - weight.min())
    torch.testing.assert_close(shared, want)
    assert shared[1].max() - shared[1].min() < 0.2
    per_kernel = normalize_kernels(weight, "per-kernel")
    assert all(per_kernel[i].min() == 0 and per_kernel[i].max() == 1 for i in range(4))


def test_a_constant_kernel_is_mid_grey_not_nan():
    weight = torch.randn(2, 3, K, K)
    weight[0] = 0.25
    out = normalize_kernels(weight, "per-kernel")
    assert not out.isnan().any() and (out[0] == 0.5).all()
    assert (normalize_kernels(torch.zeros(2, 3, K, K), "shared") == 0.5).all()


def test_upscaling_is_nearest_neighbour_blocks():
    weight = torch.randn(6, 3, K, K)
    scale = 5
    grid = kernel_grid(weight, groups=2, scale=scale, nrow=3)
    norm = normalize_kernels(weight)
    for k in range(6):
        block, i = divmod(k, 3)
        top = block * (expected_size(1, 3, scale)[1] + BLOCK_GAP)
        t = tile(grid.permute(1, 2, 0), scale, 0, i, top=top)  # (55, 55, 3)
        # every weight is a scale x scale square of one colour
        squares = t.reshape(K, scale, K, scale, 3)
        assert (squares == squares[:, :1, :, :1]).all()
        torch.testing.assert_close(squares[:, 0, :, 0], norm[k].permute(1, 2, 0))
    assert tuple(grid.shape) == (3, *expected_size(1, 3, scale, blocks=2)[::-1])


def test_kernel_grid_refuses_kernels_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="cannot be split into 2 groups"):
        kernel_grid(torch.randn(5, 3, K, K), groups=2)
    with pytest.raises(ValueError, match="normalize must be one of"):
        kernel_grid(torch.randn(4, 3, K, K), normalize="global")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_a_non_checkpoint_weights_file_is_a_one_line_error(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    result = run("--weights", bad, "--out", tmp_path / "k.png")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}: not a readable checkpoint (")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "k.png").exists()


def test_an_unknown_image_type_is_a_one_line_error(checkpoint, tmp_path):
    result = run("--weights", checkpoint(groups=1)[0], "--out", tmp_path / "k.nosuchformat")
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'k.nosuchformat'}: unknown image type "
                             "'.nosuchformat'; use a .png file name\n")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_default_weights_come_from_the_environment(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVE_WEIGHTS", str(checkpoint(groups=1)[0]))
    monkeypatch.chdir(tmp_path)
    result = run()
    assert result.exit_code == 0, result.output
    w, h = expected_size(3, 8, 4)
    assert result.output == (f"Wrote kernels.png: 24 conv1 kernels of 11x11, 1 block of 3x8 "
                             f"tiles, {w}x{h}px\n")
    assert (tmp_path / "kernels.png").is_file()
