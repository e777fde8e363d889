"""Checkpoints round-trip, bad files are refused in one line, `imagenet` loads from the cache."""
import os
import shutil
import time

import pytest
import torch

from conftest import tiny_model, write_malicious_checkpoint
from retrieval.errors import WeightsError
from retrieval.transforms import Preprocess
from retrieval.weights import IMAGENET, file_stamp, imagenet_weights_path, load_weights, save_checkpoint


def test_checkpoint_round_trip_gives_the_same_fc7(tmp_path):
    model = tiny_model(3, groups=2).eval()
    pre = Preprocess(image_size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    save_checkpoint(tmp_path / "c.pt", model, pre, ["a", "b", "c"], training={"epoch": 3})
    w = load_weights(tmp_path / "c.pt")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(w.model.fc7(x), model.fc7(x))
    assert w.model.config == model.config and not w.model.training
    assert w.preprocess == pre and w.classes == ["a", "b", "c"]
    assert w.source == str((tmp_path / "c.pt").resolve()) and len(w.sha256) == 64
    assert w.transform.transforms[1].size == (64, 64)  # centre crop at the trained size


def test_a_checkpoint_of_another_shape_is_refused_and_init_still_draws(tmp_path):
    state = tiny_model(3).state_dict()
    save_checkpoint(tmp_path / "c.pt", tiny_model(3), Preprocess(), list("abc"))
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in state.items() if not k.startswith("classifier.6")}
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(WeightsError, match=r"c.pt: checkpoint does not match the model .*"
                                           r"Missing key\(s\) in state_dict: \"classifier.6") as e:
        load_weights(tmp_path / "c.pt")  # a parameter left out would stay uninitialised memory
    assert "\n" not in str(e.value)
    assert torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5  # torch's init is back


def test_a_recorded_stamp_spares_hashing_until_the_file_is_touched(small_checkpoint, tmp_path):
    path = tmp_path / "c.pt"
    shutil.copyfile(small_checkpoint, path)
    w = load_weights(path)
    assert w.stamp == file_stamp(path)
    fake = "f" * 64  # a digest the file cannot have: it shows the file was not hashed again
    assert load_weights(path, trusted=(w.stamp, fake)).sha256 == fake
    time.sleep(0.05)  # past the file system's timestamp granularity
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, but the ctime moves on
    assert load_weights(path, trusted=(w.stamp, fake)).sha256 == w.sha256
    shutil.copyfile(small_checkpoint, tmp_path / "other.pt")
    os.replace(tmp_path / "other.pt", path)  # another file in its place: another inode
    assert load_weights(path, trusted=(file_stamp(path), fake)).sha256 == fake
    assert load_weights(path, trusted=(w.stamp, fake)).sha256 == w.sha256


def test_query_time_loading_hashes_only_a_file_changed_since_the_build(small_checkpoint, tmp_path,
                                                                        monkeypatch):
    from indexes.store import manifest
    from retrieval import weights as weights_module
    from retrieval.features import FeatureExtractor

    path = tmp_path / "c.pt"
    shutil.copyfile(small_checkpoint, path)
    identity = FeatureExtractor.load(str(path)).identity()  # as build-index records it
    hashed = []
    real = weights_module.sha256_file
    monkeypatch.setattr(weights_module, "sha256_file", lambda p: hashed.append(p) or real(p))

    def reopened():  # what Searcher.open does with an index's settings
        extractor = FeatureExtractor.load(*manifest.weights_ref(identity))
        manifest.check_identity(identity, extractor.identity())
        return extractor.identity()["sha256"]

    assert reopened() == identity["sha256"] and hashed == []
    time.sleep(0.05)
    path.touch()
    assert reopened() == identity["sha256"] and len(hashed) == 1


def test_checkpoint_is_loaded_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(tmp_path / "evil.pt", marker)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="evil.pt: refused"):
        load_weights(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", b"not a checkpoint",
                                     b"PK\x03\x04truncated"])
def test_non_checkpoint_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.pt: not a readable checkpoint") as e:
        load_weights(path)
    assert "\n" not in str(e.value)


def test_truncated_checkpoint_is_refused(small_checkpoint):
    data = small_checkpoint.read_bytes()
    small_checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        load_weights(small_checkpoint)


def test_other_torch_files_are_not_checkpoints(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a retrieve checkpoint"):
        load_weights(tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="no such checkpoint"):
        load_weights(tmp_path / "missing.pt")


def test_imagenet_loads_from_torch_home_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = imagenet_weights_path()
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    reference = torchvision.models.alexnet().eval()  # stands in for the published weights
    torch.save(reference.state_dict(), path)
    w = load_weights(IMAGENET)
    assert w.source == "imagenet" and len(w.classes) == 1000 and w.model.config.arch == "torchvision"
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(w.model.fc7(x), reference.classifier[:6](
            torch.flatten(reference.avgpool(reference.features(x)), 1)), atol=1e-5)
    assert w.model.conv1_weight.shape == (64, 3, 11, 11)
    assert load_weights(IMAGENET, trusted=(file_stamp(path), "f" * 64)).sha256 == "f" * 64


def test_imagenet_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(WeightsError, match=r"imagenet: .*not cached.*retrieve train.*retrieve demo"):
        load_weights(IMAGENET)
