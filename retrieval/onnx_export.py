"""The fc7 network as an ONNX graph, written into an index once so that queries need no torch.

Each module of the eval-mode network (``features``, ``avgpool``, ``classifier`` up to fc7)
becomes the ONNX operator that computes the same thing; a module this does not know stops
the export, and queries keep loading torch. Before it is published the graph is run by ONNX
Runtime on a probe batch and compared with torch's fc7.

torch.onnx is not used: its exporter (torch.export, then onnxscript) took 1.6 to 4 s per
network plus 1.3 s of imports here for these ~20 operators, and needs onnxscript; the older
TorchScript one is deprecated and cannot export the adaptive pooling with a variable batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .atomic import file_mode, fsync_dir
from .errors import ExportError
from .features import LAYER
from .model import AlexNet
from .onnx_fc7 import (DATA, DESCRIPTION, FORMAT, GRAPH, INPUT, OUTPUT, VERSION,
                       export_dir, open_session)
from .weights import Weights, uninitialised_parameters

OPSET = 17  # every operator used here has had its present meaning since opset 13 or earlier
IR_VERSION = 8  # opset 17's; read by every ONNX Runtime since 1.13
PROBE_BATCH = 2
PROBE_SEED = 0
# |ONNX Runtime - torch| <= TOLERANCE x max|torch| on the probe: the same float32 products
# summed in another order differ by ~1e-6 relatively (measured 7e-7 on the paper's network).
TOLERANCE = 1e-4
# Offsets of the weights in DATA: ONNX Runtime maps a tensor's bytes instead of reading them
# when its offset is a multiple of the allocation granularity (4 KiB pages on Linux, 16 KiB
# on Apple silicon, 64 KiB on Windows).
DATA_ALIGNMENT = 1 << 16
INLINE_BYTES = 1024  # onnx.save_model's default size_threshold for external data


class _Graph:
    """ONNX nodes and initializers, appended in order; each ``op`` returns its output name.

    Each initializer's bytes go straight into ``data`` (the DATA file), at an offset ONNX
    Runtime can memory-map, and the graph only points at them: the weights are copied once,
    not into protobuf messages and out again (onnx.save_model's way: 3 of 5.6 s measured for
    the paper's network).
    """

    def __init__(self, data: BinaryIO) -> None:
        self.nodes, self.initializers, self.last, self.data = [], [], INPUT, data

    def const(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))  # ONNX's order
        if array.nbytes < INLINE_BYTES:  # small ones, shapes among them, in the graph itself
            self.initializers.append(numpy_helper.from_array(array, name))
            return name
        self.data.write(b"\0" * (-self.data.tell() % DATA_ALIGNMENT))
        offset = self.data.tell()
        self.data.write(memoryview(array).cast("B"))
        tensor = TensorProto(name=name, dims=array.shape,
                             data_type=helper.np_dtype_to_tensor_dtype(array.dtype))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", DATA), ("offset", offset), ("length", array.nbytes)):
            tensor.external_data.add(key=key, value=str(value))
        self.initializers.append(tensor)
        return name

    def op(self, op_type: str, *inputs: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, [self.last, *inputs], [name], name=name,
                                           **attrs))
        self.last = name
        return name


def _param(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def _module(g: _Graph, m: nn.Module, name: str) -> None:
    """Append the ONNX operator computing eval-mode ``m``; ExportError for any other module."""
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
        (ph, pw), b = m.padding, m.bias
        g.op("Conv", g.const(f"{name}.weight", _param(m.weight)),
             *([g.const(f"{name}.bias", _param(b))] if b is not None else []), name=name,
             kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=[ph, pw, ph, pw],
             dilations=list(m.dilation), group=m.groups)
    elif isinstance(m, nn.ReLU):
        g.op("Relu", name=name)
    elif isinstance(m, nn.LocalResponseNorm) and m.size % 2 == 1:
        # torch: a / (k + alpha/n * sum of a^2 over the n channels centred on a)^beta; ONNX's
        # LRN is the same formula (for odd n the windows agree)
        g.op("LRN", name=name, size=m.size, alpha=m.alpha, beta=m.beta, bias=m.k)
    elif (isinstance(m, nn.MaxPool2d) and not m.return_indices
          and m.dilation in (1, (1, 1)) and m.padding in (0, (0, 0))):
        pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]  # noqa: E731
        g.op("MaxPool", name=name, kernel_shape=pair(m.kernel_size), strides=pair(m.stride),
             ceil_mode=int(m.ceil_mode))
    elif isinstance(m, nn.Dropout):
        pass  # identity in eval mode
    elif isinstance(m, nn.Linear) and m.bias is not None:
        g.op("Gemm", g.const(f"{name}.weight", _param(m.weight)),
             g.const(f"{name}.bias", _param(m.bias)), name=name, transB=1)
    else:
        raise ExportError(f"no ONNX translation for {name} ({type(m).__name__})")


def adaptive_pool_matrix(size: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """(h*w, oh*ow) float32 P such that (B, C, h*w) @ P is torch's AdaptiveAvgPool2d(out):
    output cell i averages the input rows floor(i*h/oh) .. ceil((i+1)*h/oh) - 1 (and columns)."""
    (h, w), (oh, ow) = size, out
    rows = [(math.floor(i * h / oh), math.ceil((i + 1) * h / oh)) for i in range(oh)]
    cols = [(math.floor(j * w / ow), math.ceil((j + 1) * w / ow)) for j in range(ow)]
    p = np.zeros((h, w, oh, ow), np.float32)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            p[r0:r1, c0:c1, i, j] = 1.0 / ((r1 - r0) * (c1 - c0))
    return p.reshape(h * w, oh * ow)


def fc7_graph(model: AlexNet, image_size: int, data: BinaryIO):
    """``model.fc7`` for (batch, 3, image_size, image_size) float32 input as an ONNX model
    (a ModelProto) whose weights are written into ``data``, the file DATA beside it."""
    g = _Graph(data)
    for i, m in enumerate(model.features):
        _module(g, m, f"features.{i}")
    with torch.inference_mode():  # pool5's size at this input: (1, C, h, w)
        pool5 = model.features(torch.zeros(1, 3, image_size, image_size)).shape
    out = model.avgpool.output_size
    out = tuple(out) if isinstance(out, tuple) else (out, out)
    if tuple(pool5[2:]) != out:  # e.g. 1x1 at 64x64, brought up to 6x6
        g.op("Reshape", g.const("pool5.shape", np.array([0, 0, -1], np.int64)), name="pool5")
        g.op("MatMul", g.const("avgpool.matrix", adaptive_pool_matrix(tuple(pool5[2:]), out)),
             name="avgpool")
    g.op("Flatten", name="flatten", axis=1)
    for i, m in enumerate(model.classifier[:-1]):  # fc6, fc7 (dropout off): pre-logits
        _module(g, m, f"classifier.{i}")
    g.op("Identity", name=OUTPUT)
    dim = model.feature_dim
    graph = helper.make_graph(
        g.nodes, "fc7",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                       ["batch", 3, image_size, image_size])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", dim])],
        g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="retrieve")
    proto.ir_version = IR_VERSION  # checked by ONNX Runtime's loader, then by the probe
    return proto


def _cpu_model(model: AlexNet) -> AlexNet:
    """``model`` itself on the CPU, or a CPU copy of it (the export reads float32 weights)."""
    if next(model.parameters()).device.type == "cpu":
        return model.eval()
    with uninitialised_parameters():
        cpu = AlexNet(model.config)
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    return cpu.eval()


def _probe(folder: Path, model: AlexNet, image_size: int) -> None:
    """ExportError unless the graph in ``folder`` answers as ``model`` does on a probe batch."""
    rng = np.random.default_rng(PROBE_SEED)
    x = rng.standard_normal((PROBE_BATCH, 3, image_size, image_size), dtype=np.float32)
    got = open_session(folder).run([OUTPUT], {INPUT: x})[0]
    want = model.fc7(torch.from_numpy(x)).numpy()
    err = float(np.abs(got - want).max()) if got.shape == want.shape else math.inf
    if not err <= TOLERANCE * max(float(np.abs(want).max()), 1.0):
        raise ExportError(f"the ONNX graph's fc7 differs from torch's by {err:.3g}")


def write_export(index: str | os.PathLike, weights: Weights) -> Path:
    """Export ``weights``' fc7 network into INDEX/onnx/<sha256>/ and return that folder.

    Written aside, checked against torch, renamed into place (a crash leaves no half export);
    exports of other weights are removed, a complete one of these is kept. ExportError when
    the network cannot be exported, answers otherwise through ONNX Runtime, or cannot be
    written.
    """
    final = export_dir(index, weights.sha256)
    if _complete(final):
        return final
    root = final.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
        try:
            _write(tmp, weights)
            os.chmod(tmp, file_mode() | 0o111)  # mkdtemp's 0700 would hide it from others
            if final.exists():  # a damaged one (a file deleted): replaced
                shutil.rmtree(final)
            os.rename(tmp, final)  # atomic; fails if another process published it first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(root)
    except ExportError:
        raise
    except Exception as e:  # disk full, permissions, ONNX Runtime refusing the graph...
        if not _complete(final):
            raise ExportError(f"no ONNX export in {root} ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:160]})") from None
    for other in root.iterdir():  # exports of weights the index no longer uses, leftovers
        if other != final:
            shutil.rmtree(other, ignore_errors=True)
    return final


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (GRAPH, DATA, DESCRIPTION))


def _write(folder: Path, weights: Weights) -> None:
    """The graph, its weights and its description into ``folder``, checked and fsynced."""
    model, size = _cpu_model(weights.model), weights.preprocess.image_size
    with open(folder / DATA, "wb") as data:
        proto = fc7_graph(model, size, data)
    (folder / GRAPH).write_bytes(proto.SerializeToString())
    _probe(folder, model, size)
    (folder / DESCRIPTION).write_text(json.dumps({
        "format": FORMAT, "version": VERSION, "weights": weights.source,
        "sha256": weights.sha256, "layer": LAYER, "dim": model.feature_dim,
        "transform": weights.preprocess.describe(), "model": asdict(model.config)},
        indent=2, sort_keys=True) + "\n")
    for name in (GRAPH, DATA, DESCRIPTION):
        os.chmod(folder / name, file_mode())  # onnx writes the data file 0600
        _fsync(folder / name)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
