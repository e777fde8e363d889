"""`retrieve query` through the index's ONNX export: torch's answers and refusals, torchvision's
preprocessing, without either."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from conftest import SMALL, draw_shape, drawn_folder, same_results, tiny_checkpoint, tiny_model
from indexes.search.searcher import Searcher
from retrieval.config import ExtractConfig
from retrieval.digest import weights_file
from retrieval.errors import ExportError
from retrieval.features import FeatureExtractor
from retrieval.onnx_export import write_export
from retrieval.onnx_fc7 import (DATA, EXPORTS, INPUT, OUTPUT, OnnxExtractor, eval_array,
                                load_extractor, open_session)
from retrieval.transforms import Preprocess, create_transform
from retrieval.weights import Weights, imagenet_weights_path


def run(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_eval_array_is_the_torchvision_eval_transform():
    """Pillow + numpy give the very numbers torchvision's Resize, CenterCrop, ToTensor and
    Normalize give, whatever the image's size and shape (up- and down-scaled)."""
    for pre in (Preprocess(image_size=SMALL),
                Preprocess(image_size=224, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))):
        for n, (w, h) in enumerate([(96, 96), (640, 480), (333, 500), (50, 31), (257, 224)]):
            img = draw_shape(n % 4, size=max(w, h), seed=n).resize((w, h))
            np.testing.assert_array_equal(eval_array(img, pre.describe()),
                                          create_transform(pre)(img).numpy())


@pytest.mark.parametrize("config,size", [(dict(groups=2), SMALL),  # pool5 1x1, brought to 6x6
                                         (dict(arch="torchvision"), 100),  # 2x2 to 6x6
                                         ({}, 224)])  # 6x6 already
def test_the_export_computes_torchs_fc7(tmp_path, config, size):
    model = tiny_model(**config).eval()
    weights = Weights(model, Preprocess(image_size=size), "in memory", "ab" * 32)
    folder = write_export(tmp_path / "idx", weights)
    assert sorted(p.name for p in folder.iterdir()) == ["fc7.json", "fc7.onnx", "fc7.onnx.data"]
    images = [draw_shape(k, size=90 + 17 * k, seed=k) for k in range(4)]
    want = model.fc7(torch.stack([weights.transform(img) for img in images])).numpy()
    x = np.stack([eval_array(img, weights.preprocess.describe()) for img in images])
    got = open_session(folder).run([OUTPUT], {INPUT: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_network_it_cannot_export_faithfully_leaves_no_export(tmp_path):
    model = tiny_model().eval()
    model.features[1] = torch.nn.GELU()
    weights = Weights(model, Preprocess(image_size=SMALL), "m", "cd" * 32)
    with pytest.raises(ExportError, match=r"no ONNX translation for features\.1 \(GELU\)"):
        write_export(tmp_path / "idx", weights)
    model = tiny_model().eval()
    model.fc7 = lambda x: 2 * type(model).fc7(model, x)  # a forward the modules do not say
    with pytest.raises(ExportError, match="fc7 differs from torch's"):
        write_export(tmp_path / "idx", Weights(model, Preprocess(image_size=SMALL), "m", "cd" * 32))
    assert list((tmp_path / "idx" / EXPORTS).iterdir()) == []  # nothing half-written


def test_imagenet_weights_are_found_where_torch_hub_caches_them(monkeypatch, tmp_path):
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "x")},
                {"HOME": str(tmp_path / "home")}):
        for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert weights_file("imagenet") == imagenet_weights_path()


def test_query_answers_through_the_export_as_torch_and_refuses_changed_weights(tmp_path):
    photos = drawn_folder(tmp_path / "photos", 2)
    ckpt, index = tiny_checkpoint(tmp_path / "c.pt"), tmp_path / "idx"
    build = ["build-index", photos, "--weights", ckpt, "--index", index, "--workers", "0", "-q"]
    run(*build)
    sha = json.loads((index / "manifest.json").read_text())["sha256"]
    assert [p.name for p in (index / EXPORTS).iterdir()] == [sha]  # tied to these weights
    query = ["query", photos, "--index", index, "-k", "3", "--json"]
    quick = json.loads(run(*query).stdout)
    paths = [q["query"] for q in quick["queries"]]
    cpu = ExtractConfig.for_queries(len(paths), 64, "cpu")

    def extractor():  # what `retrieve query` embeds these queries with
        with Searcher.open(index, partial(load_extractor, index, config=cpu)) as searcher:
            return searcher.extractor

    torch_way = partial(FeatureExtractor.load, config=cpu)
    with Searcher.open(index, torch_way) as searcher:
        assert isinstance(extractor(), OnnxExtractor)
        assert same_results({"queries": [
            {"query": q, "results": [{"path": p, "distance": d} for p, d in r]}
            for q, r in searcher.query(paths, 3)[0]]}, quick)

    original = ckpt.read_bytes()
    tiny_checkpoint(ckpt)  # other weights in the same file: refused as before, export unused
    new = FeatureExtractor.load(str(ckpt)).identity()["sha256"]
    assert run(*query, ok=False).output == (
        f"Error: {ckpt}: the weights changed since the index was built (sha256 {new[:12]}... "
        f"instead of {sha[:12]}...); rebuild the index with build-index --rebuild\n")
    ckpt.write_bytes(original)  # the same bytes again (a new stamp): hashed, then accepted
    assert isinstance(extractor(), OnnxExtractor)
    (index / EXPORTS / sha / DATA).unlink()  # a damaged export: torch answers, the same
    assert not isinstance(extractor(), OnnxExtractor)
    assert same_results(json.loads(run(*query).stdout), quick)
    run(*build)  # and the next build-index writes it again
    assert (index / EXPORTS / sha / DATA).is_file() and isinstance(extractor(), OnnxExtractor)


def test_a_build_that_cannot_write_the_export_says_so_and_succeeds(tmp_path):
    photos, index = drawn_folder(tmp_path / "photos", 1), tmp_path / "idx"
    index.mkdir()
    (index / EXPORTS).write_text("a file where the export's folder goes")
    built = run("build-index", photos, "--weights", tiny_checkpoint(tmp_path / "c.pt"),
                "--index", index, "--workers", "0", "-q")
    assert built.stderr.startswith(f"note: no ONNX export in {index / EXPORTS} (FileExistsError: ")
    assert built.stderr.endswith("); `retrieve query` will load torch\n")
    assert built.stdout.startswith("Indexed 4 images (4 new")
    found = json.loads(run("query", photos / "circle" / "0.png", "--index", index, "--json").stdout)
    assert found["queries"][0]["results"][0]["distance"] < 1e-3  # torch answered: itself first
