"""`retrieve demo` runs the whole tool offline and writes every file it promises."""

import json
from dataclasses import replace
from functools import partial

import pytest
from click.testing import CliRunner
from PIL import Image

from cli import demo as demo_command
from cli.main import cli
from conftest import TINY
from cli import demo_steps as demo_module
from retrieval.config import DemoConfig
from cli.demo_steps import CENTRED_GREY, DemoSummary, format_summary


EPOCHS = 3  # of the demo's training here: its best weights are those of epoch 3 on these
# shapes (precision@10 0.140, as after the 10 to 20 epochs that --minutes 0.1 allowed), and
# the run no longer depends on the machine's speed


@pytest.mark.slow  # trains, indexes and queries a small collection
def test_demo_on_shapes_writes_every_file_and_beats_chance(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_command, "DemoConfig", partial(DemoConfig, width=TINY["width"]))
    train = demo_module.train
    monkeypatch.setattr(demo_module, "train", lambda config: train(replace(config, epochs=EPOCHS)))
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--data", "shapes", "--minutes", "0.1",
                                      "--per-class", "12", "--queries-per-class", "3",
                                      "--out", str(out), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "checkpoint.pt", "metrics.jsonl", "curves.png", "kernels.png",
                 "queries.png", "summary.json", "index/manifest.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == "shapes" and len(summary["classes"]) == 10
    assert summary["train_images"] == 120 and summary["query_images"] == 30
    assert summary["epochs"] >= 1
    assert summary["precision_at_10_fc7"] > summary["chance"] == 0.1
    # Figure 4: 6 query rows of 1 + 10 tiles.
    assert Image.open(out / "queries.png").size == (11 * 132 + 4, 6 * 148 + 4)
    lines = result.stdout.splitlines()  # stderr may warn: 3 epochs learn little
    assert lines[0].startswith(
        "Trained the paper's AlexNet on 120 shapes images (10 classes, 64x64, a tenth held out")
    assert summary["mean_ap_fc7"] > 0 and summary["mean_ap_pixels"] > 0
    assert summary["map_ratio"] == summary["mean_ap_fc7"] / summary["mean_ap_pixels"]
    assert lines[1] == (f"Held-out queries: 30 (chance 0.100). mAP over the whole ranking: "
                        f"{summary['mean_ap_fc7']:.3f} with fc7, {summary['mean_ap_pixels']:.3f} "
                        f"with raw pixels ({summary['map_ratio']:.2f}x).")
    assert lines[2].startswith(
        f"precision@10, the top of the list: {summary['precision_at_10_fc7']:.3f} with fc7, ")
    assert lines[-1].startswith("Try: retrieve query ") and lines[-1].endswith(" -k 10")
    # The suggested query works on the demo's index.
    query = CliRunner().invoke(cli, ["query", *lines[-1].split()[3:-2], "--index",
                                     str(out / "index"), "-k", "3", "--json"])
    assert query.exit_code == 0, query.output
    assert len(json.loads(query.output)["queries"][0]["results"]) == 3


def test_the_summary_says_why_pixels_keep_up_at_the_top_of_fashion_mnists_lists(tmp_path):
    """The figures of a two-minute Fashion-MNIST demo: fc7 leads in mAP, not in precision@10."""
    figures = dict(classes=list("abcdefghij"), train_images=600, query_images=100, image_size=64,
                   epochs=8, val_top1_error=0.317, precision_at_10_fc7=0.626,
                   precision_at_10_pixels=0.643, chance=0.1, mean_ap_fc7=0.584,
                   mean_ap_pixels=0.459, seconds={"train": 135, "total": 142},
                   files={"index": str(tmp_path / "index")})
    lines = format_summary(DemoSummary("fashion-mnist", **figures), tmp_path).splitlines()
    assert lines[1:4] == [
        "Held-out queries: 100 (chance 0.100). mAP over the whole ranking: 0.584 with fc7, "
        "0.459 with raw pixels (1.27x).",
        "precision@10, the top of the list: 0.626 with fc7, 0.643 with raw pixels (0.97x).",
        CENTRED_GREY]
    shapes = format_summary(DemoSummary("shapes", **figures), tmp_path)
    assert CENTRED_GREY not in shapes  # a fact about Fashion-MNIST's pictures, said only there
