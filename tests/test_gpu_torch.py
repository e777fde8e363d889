"""The model side's GPU paths, checked on the CPU: resume with more GPU RNG states than GPUs,
a CPU run never touching CUDA, each rank's own streams, the loss checked every N steps, LRN in
float32 under bf16, extraction without TF32, nvJPEG's batch decode (on the CPU here), workers."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import SMALL, draw_shape, tiny_model
from retrieval import distributed, engine, gpu_decode, state
from retrieval.config import EXTRACT_WORKERS, loader_workers
from retrieval.errors import TrainingError
from retrieval.features import ImageDataset, full_float32
from retrieval.model import PaperLRN
from retrieval.transforms import Preprocess, create_transform


def test_resume_restores_the_gpus_there_are_and_each_rank_its_own_streams(monkeypatch):
    saved = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: saved.append((s, i)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("CUDA touched"))
    torch.manual_seed(1)
    rank1 = state.rng_state(cuda=False)  # a CPU run reads no GPU state
    assert rank1["cuda"] == []
    torch.manual_seed(0)
    rank0 = {**state.rng_state(), "cuda": [torch.zeros(8, dtype=torch.uint8) + i
                                           for i in range(3)]}  # saved on a 3-GPU machine
    training = {"rng": rank0, "rng_ranks": [rank0, rank1], "optimizer": {}, "scheduler": {}}
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    training.update(optimizer=opt.state_dict(), scheduler=sched.state_dict(), epoch=1,
                    metrics=[], best_val_top1_error=1.0, best_epoch=1)
    state.restore(training, opt, sched, "ckpt.pt", rank=0, cuda=True)
    assert len(saved) == 1 and saved[0][1] == 0 and saved[0][0][0] == 0  # GPU 0 alone here
    state.restore(training, opt, sched, "ckpt.pt", rank=1)
    x = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(x, torch.rand(3))  # rank 1 goes on with its own stream, not rank 0's
    before = torch.get_rng_state()
    state.restore(training, opt, sched, "ckpt.pt", rank=2)  # more ranks now: keeps its seeding
    assert torch.equal(before, torch.get_rng_state())


def test_a_loss_checked_every_n_steps_is_reported_at_its_own_step(monkeypatch):
    monkeypatch.setattr(engine, "sync_every", lambda device: 4)
    real, calls = engine.F.cross_entropy, []

    def diverging(*args, **kw):
        calls.append(1)
        return real(*args, **kw) * (float("nan") if len(calls) >= 2 else 1.0)

    monkeypatch.setattr(engine.F, "cross_entropy", diverging)
    model = tiny_model()
    batches = [(torch.randn(2, 3, SMALL, SMALL), torch.tensor([0, 1]), []) for _ in range(6)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(TrainingError, match="epoch 3, step 2: the loss became nan"):
        engine.train_one_epoch(model, batches, opt, torch.device("cpu"), 3, progress=False)
    assert len(calls) == 4  # found at the 4th step's check, reported as the 2nd's


def test_lrn_runs_in_float32_under_bf16():
    x = torch.relu(torch.randn(2, 96, 13, 13)) * 4
    plain = nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)
    assert torch.equal(PaperLRN()(x), plain(x))  # float32: the very same computation
    half = x.to(torch.bfloat16)
    assert torch.equal(PaperLRN()(half), plain(x.to(torch.bfloat16).float()).to(torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(PaperLRN()(x), plain(x))


def test_extraction_runs_without_tf32_and_restores_the_settings():
    cudnn, cublas = torch.backends.cudnn, torch.backends.cuda.matmul
    cudnn.allow_tf32, before = True, cublas.allow_tf32
    with pytest.raises(RuntimeError):
        with full_float32():
            assert (cudnn.allow_tf32, cublas.allow_tf32) == (False, False)
            raise RuntimeError
    assert (cudnn.allow_tf32, cublas.allow_tf32) == (True, before)


def test_nvjpeg_batches_decode_as_the_cpu_path_does(tmp_path):
    """decode() with device "cpu" (torchvision's CPU decode_jpeg in nvJPEG's place): the EXIF
    orientation nvJPEG ignores is applied, other formats and bad files keep their place."""
    pre = Preprocess(image_size=SMALL)
    paths = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[gpu_decode.EXIF_ORIENTATION] = orientation
        img = draw_shape(orientation % 4, size=96).resize((120, 90))
        paths.append(str(tmp_path / f"o{orientation}.jpg"))
        img.save(paths[-1], quality=95, exif=exif)
    paths.append(str(tmp_path / "shape.png"))
    draw_shape(1).save(paths[-1])
    paths.append(str(tmp_path / "broken.jpg"))
    (tmp_path / "broken.jpg").write_bytes(gpu_decode.JPEG_MAGIC + b"not a jpeg at all")
    transform = create_transform(pre)
    encoded = gpu_decode.EncodedImages(paths, transform, pre.resize_size)
    images, positions, errors = gpu_decode.decode([encoded[i] for i in range(len(paths))], pre,
                                                  transform, torch.device("cpu"))
    assert positions.tolist() == list(range(9)) and [i for i, _ in errors] == [9]
    reference = ImageDataset(paths, transform, pre.resize_size)
    for i in range(9):
        diff = (images[i] - reference[i][0]).abs()
        assert diff.mean() < 0.03, (paths[i], float(diff.mean()))


def test_decoding_workers_and_process_groups_fit_the_machine(monkeypatch):
    assert loader_workers(cuda=False) == EXTRACT_WORKERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(cuda=True) == max(1, cores // 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    two_on_one = distributed.DistInfo(rank=1, world_size=2, local_rank=1, local_world_size=2)
    cuda = torch.device("cuda")
    assert distributed.backend_for(cuda, two_on_one) == "gloo"  # NCCL: one rank per GPU
    assert distributed.process_device(cuda, two_on_one) == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.backend_for(cuda, two_on_one) == "nccl"
    assert distributed.process_device(cuda, two_on_one) == torch.device("cuda", 1)
    assert distributed.backend_for(torch.device("cpu"), two_on_one) == "gloo"
