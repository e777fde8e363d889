"""`retrieve demo` runs the whole tool offline and writes every file it promises."""

import json
from functools import partial

from click.testing import CliRunner
from PIL import Image

from cli import demo as demo_command
from cli.main import cli
from conftest import TINY
from retrieval.config import DemoConfig


def test_demo_on_shapes_writes_every_file_and_beats_chance(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_command, "DemoConfig", partial(DemoConfig, width=TINY["width"]))
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
    lines = result.stdout.splitlines()  # stderr may warn: 4 s of training learn little
    assert lines[0].startswith(
        "Trained the paper's AlexNet on 120 shapes images (10 classes, 64x64, a tenth held out")
    assert f"precision@10: {summary['precision_at_10_fc7']:.3f} with fc7" in lines[1]
    assert lines[-1].startswith("Try: retrieve query ") and lines[-1].endswith(" -k 10")
    # The suggested query works on the demo's index.
    query = CliRunner().invoke(cli, ["query", *lines[-1].split()[3:-2], "--index",
                                     str(out / "index"), "-k", "3", "--json"])
    assert query.exit_code == 0, query.output
    assert len(json.loads(query.output)["queries"][0]["results"]) == 3
