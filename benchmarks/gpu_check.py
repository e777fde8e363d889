#!/usr/bin/env python3
"""The GPU check (issues #22 and #28): FAISS's GPU paths, the network's numerics and speeds,
Fashion-MNIST at 224 px, resume and torchrun, in one command under one global deadline.

    python benchmarks/gpu_check.py OUT --carry gpu-carry          # on the GPU machine
    python benchmarks/gpu_check.py OUT --dry-run                  # tiny sizes, the CPU (tests)

Sections run in order of what matters most; each one guarded, in groups of child processes
(a crash of FAISS or CUDA loses its section, not the run: the group goes on after it); a
section that would not end before the deadline is skipped and says so (`--only` runs it
next time). OUT gets gpu_check.jsonl (one JSON object a line, as it goes), gpu_check.md (the
table, at the end) and kernels-gpu.png. No network: faiss-gpu comes from the bundle in
--carry (../shared/gpu/README.md), smoke-tested first; where it fails, FAISS sections report
torch's exact search alone. benchmarks/README.md says how #28 runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

DEADLINE_S = 450  # the "under 8 minutes in all", with room for start-up and the table
BUNDLE = "faiss-gpu-sm90-bundle.tar.xz"  # ../shared/gpu/, copied into the carry folder
JSONL, TABLE = "gpu_check.jsonl", "gpu_check.md"
# (name, child group, seconds it needs on one H200, module:function), most important first.
SECTIONS = [
    ("faiss_smoke", "smoke", 20, "gpu_faiss:smoke"),
    ("faiss_exact_100k", "faiss", 45, "gpu_faiss:exact_100k"),
    ("faiss_limits", "faiss", 25, "gpu_faiss:limits"),
    ("faiss_factories", "faiss", 60, "gpu_faiss:factories"),
    ("fc7_numerics", "model", 15, "gpu_model:fc7_numerics"),
    ("train_throughput", "model", 60, "gpu_model:train_throughput"),
    ("extraction", "model", 60, "gpu_model:extraction"),
    ("fashion_mnist", "fmnist", 150, "gpu_model:fashion_mnist"),
    ("faiss_1m", "faiss2", 90, "gpu_faiss:flat_1m"),
    ("duplicates", "faiss2", 25, "gpu_faiss:duplicates"),
    ("service", "faiss2", 20, "gpu_faiss:service"),
    ("resume", "ranks", 25, "gpu_model:resume"),
    ("torchrun", "ranks", 60, "gpu_model:torchrun"),
]


@dataclass
class Ctx:
    """What every section gets: where to write, the deadline, the sizes and the devices."""

    out: Path
    work: Path  # scratch files, deleted at the end
    deadline: float  # time.time() by which everything ends
    dry: bool
    carry: Path | None
    faiss_gpu: bool  # the bundle's smoke test passed (or, in a dry run, never)
    cache: dict = field(default_factory=dict)  # what sections of one process share

    @property
    def cuda(self) -> bool:
        import torch

        return torch.cuda.is_available() and not self.dry

    @property
    def device(self):
        import torch

        return torch.device("cuda" if self.cuda else "cpu")

    def left(self) -> float:
        return self.deadline - time.time()

    def size(self, real, dry):
        return dry if self.dry else real

    def emit(self, section: str, **fields) -> None:
        """One JSON line, appended as it comes (a crash loses nothing written before)."""
        record = {"section": section, "time": round(time.time(), 1), **fields}
        with open(self.out / JSONL, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        print(f"[gpu_check] {json.dumps(record, default=str)[:400]}", flush=True)


def boot_faiss(carry: Path | None):
    """faiss from the carried bundle (unpacked once into the temp folder), else the installed
    one. Before any `import faiss` of the project's modules."""
    bundle = carry / BUNDLE if carry is not None else None
    if bundle is None or not bundle.is_file():
        import faiss

        return faiss
    target = Path(tempfile.gettempdir()) / "gpucheck"
    if not (target / "faiss_boot.py").is_file():
        with tarfile.open(bundle) as tar:
            try:
                tar.extractall(target.parent, filter="data")  # Python >= 3.11.4
            except TypeError:
                tar.extractall(target.parent)
    os.environ["FAISS_BUNDLE_DIR"] = str(target)  # gpu_boot_run.py boots torchrun's children
    sys.path.insert(0, str(target))
    import faiss_boot

    return faiss_boot.boot()


def run_section(ctx: Ctx, name: str, need: float, target: str) -> None:
    """One section, guarded: ok with its figures, skipped before the deadline, or error."""
    import importlib

    if ctx.left() < ctx.size(need, 0):
        ctx.emit(name, status="skipped",
                 why=f"needs ~{need} s, {ctx.left():.0f} s left: --only {name}")
        return
    ctx.emit(name, status="started")
    start, cpu = time.perf_counter(), time.process_time()
    try:
        module, function = target.split(":")
        figures = getattr(importlib.import_module(module), function)(ctx) or {}
        ctx.emit(name, status="ok", seconds=round(time.perf_counter() - start, 1),
                 cpu_s=round(time.process_time() - cpu, 1), **figures)
    except Exception as e:  # noqa: BLE001: a section's failure is a result, the next one runs
        ctx.emit(name, status="error", seconds=round(time.perf_counter() - start, 1),
                 error=f"{type(e).__name__}: {e}"[:500],
                 where=traceback.format_exc().strip().splitlines()[-3:])


def records(out: Path) -> list[dict]:
    path = out / JSONL
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def last_status(out: Path) -> dict[str, dict]:
    """section -> its last record."""
    return {r["section"]: r for r in records(out)}


def run_group(args, group: str, names: list[str], deadline: float, faiss_gpu: bool) -> None:
    """The sections of ``group`` in a child process; after a crash, the rest in another."""
    todo = list(names)
    while todo and time.time() < deadline - 5:
        cmd = [sys.executable, str(Path(__file__).resolve()), str(args.out), "--child",
               "--only", ",".join(todo), "--deadline-at", str(deadline),
               "--faiss-gpu", str(int(faiss_gpu))]
        if args.carry is not None:
            cmd += ["--carry", str(args.carry)]
        try:
            code = subprocess.run(cmd, timeout=max(1.0, deadline - time.time())).returncode
        except subprocess.TimeoutExpired:
            code = "the deadline"
        seen = last_status(args.out)
        done = [n for n in todo if seen.get(n, {}).get("status") in ("ok", "error", "skipped")]
        broken = [n for n in todo if seen.get(n, {}).get("status") == "started"]
        for n in broken:
            ctx_emit(args.out, n, status="crashed", why=f"its process ended ({code})")
        todo = [n for n in todo if n not in done and n not in broken]
        if code == "the deadline":
            break
    for n in todo:
        ctx_emit(args.out, n, status="skipped", why="deadline reached before it started")


def ctx_emit(out: Path, section: str, **fields) -> None:
    Ctx(out, out, 0, False, None, False).emit(section, **fields)


def environment(args) -> dict:
    """What the figures were measured on: GPU, driver, Python; torch's versions without
    starting CUDA in this process."""
    info = {"python": platform.python_version(), "host": platform.node(), "dry_run": args.dry_run,
            "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        info["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = "none (no nvidia-smi)"
    import torch

    info.update(torch=torch.__version__, cuda=torch.version.cuda, cpus=os.cpu_count())
    return info


def table(out: Path) -> str:
    """The Markdown table of the last record of every section."""
    seen = last_status(out)
    env = seen.get("environment", {})
    lines = [f"# GPU check, {env.get('date', '')}", "",
             f"GPU: {env.get('gpu', '?')}; torch {env.get('torch', '?')} (CUDA "
             f"{env.get('cuda', '?')}); Python {env.get('python', '?')}; "
             f"{env.get('cpus', '?')} CPUs; dry run: {env.get('dry_run', '?')}", "",
             "| section | status | s | figures |", "| --- | --- | --- | --- |"]
    skip = {"section", "time", "status", "seconds", "cpu_s"}
    for name, *_ in SECTIONS:
        r = seen.get(name, {"status": "not run"})
        figures = "; ".join(f"{k}={_short(v)}" for k, v in r.items() if k not in skip)
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | "
                     f"{figures.replace('|', '/')[:900]} |")
    return "\n".join(lines) + "\n"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in v.items()) + "}"
    return str(v)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path,
                    help="folder for gpu_check.jsonl, gpu_check.md, kernels-gpu.png")
    ap.add_argument("--carry", type=Path, help="the folder benchmarks/gpu_carry.sh assembled")
    ap.add_argument("--deadline-s", type=float, default=DEADLINE_S, help="the whole run's budget")
    ap.add_argument("--only", help="comma-separated sections (default: all, in order)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, in this process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--deadline-at", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--faiss-gpu", type=int, default=0, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = args.deadline_at or time.time() + args.deadline_s
    wanted = args.only.split(",") if args.only else [n for n, *_ in SECTIONS]
    unknown = set(wanted) - {n for n, *_ in SECTIONS}
    if unknown:
        raise SystemExit(f"gpu_check: no section {', '.join(sorted(unknown))}")
    chosen = [s for s in SECTIONS if s[0] in wanted]
    if (not args.child and any(t.startswith("gpu_faiss:") for *_, t in chosen)
            and "faiss_smoke" not in last_status(args.out)):
        chosen = [SECTIONS[0]] + [s for s in chosen if s[0] != "faiss_smoke"]  # smoke first
    if args.child or args.dry_run:  # run here
        faiss = boot_faiss(args.carry)
        work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
        ctx = Ctx(args.out, work, deadline, args.dry_run, args.carry, bool(args.faiss_gpu),
                  {"faiss": faiss})
        if args.dry_run:
            ctx_emit(args.out, "environment", **environment(args))
        try:
            for name, _, need, target in chosen:
                run_section(ctx, name, need, target)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    else:
        ctx_emit(args.out, "environment", **environment(args))
        groups: dict[str, list[str]] = {}
        for name, group, *_ in chosen:
            groups.setdefault(group, []).append(name)
        faiss_gpu = False
        for group, names in groups.items():
            run_group(args, group, names, deadline, faiss_gpu)
            smoke = last_status(args.out).get("faiss_smoke", {})
            faiss_gpu = faiss_gpu or bool(smoke.get("faiss_gpu"))
    if not args.child:
        (args.out / TABLE).write_text(table(args.out))
        print(table(args.out))
    bad = [r for r in last_status(args.out).values() if r.get("status") in ("error", "crashed")]
    return 1 if bad and args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
