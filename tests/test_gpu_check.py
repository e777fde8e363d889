"""benchmarks/gpu_check.py --dry-run: every section of the GPU check runs on the CPU at tiny
sizes, so that the one command of the GPU run (#28) does not rot between GPU runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from indexes.store import gpu

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_section_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "_placement", None)  # the check configures FAISS's device
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", check)  # for its dataclass
    spec.loader.exec_module(check)
    out = tmp_path / "out"
    assert check.main([str(out), "--dry-run"]) == 0
    records = [json.loads(line) for line in (out / check.JSONL).read_text().splitlines()]
    last = {r["section"]: r for r in records}
    assert {name: last[name]["status"] for name, *_ in check.SECTIONS} == {
        name: "ok" for name, *_ in check.SECTIONS}
    assert last["faiss_limits"]["k_big_recall"] == 1.0
    assert last["faiss_exact_100k"]["cpu_self_max"] == 0.0
    assert last["service"]["wrong"] == 0 and last["duplicates"]["same_pairs"]
    assert last["resume"]["epochs"] == 2 and (out / "kernels-gpu.png").stat().st_size > 0
    table = (out / check.TABLE).read_text().splitlines()
    assert sum(line.startswith("| ") for line in table) == len(check.SECTIONS) + 2  # + header
