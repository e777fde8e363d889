"""`retrieve serve` under load: p50/p99 latency and queries/s of uploads and by-id neighbours
with 1, 4 and 16 concurrent clients, beside `retrieve query` for the same image in the same run.

Two indexes, both with the imagenet identity (a random-weights torchvision AlexNet file in a
temporary TORCH_HOME, as query_latency.py does): a flat one of --n synthetic fc7-like vectors,
stored through the library's build path, and one of real JPEG photos run through the network.
The server is `python -m cli serve` in a subprocess; clients are threads over HTTP keep-alive.
The server's resident memory is read from /proc before and after --memory-requests requests.

    python benchmarks/serve.py                   # 100k vectors: 1.6 GB of vectors on disk
    python benchmarks/serve.py --n 20000 --requests 50
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CLIENTS = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`retrieve serve` on an index, in a subprocess, until stopped."""

    def __init__(self, index: Path, env: dict) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--index", str(index), "--port",
             str(self.port), "--device", "cpu"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/api/info")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not start: " + self.proc.stderr.read().decode()[-2000:])

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def multipart(image: bytes, name: str) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n")
    body = head.encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def load(port: int, clients: int, requests: int, make) -> dict:
    """``clients`` threads, each sending ``requests`` requests made by ``make(rng)``."""
    latencies, errors = [], []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(requests):
            method, path, body, headers = make(rng)
            t = time.perf_counter()
            try:
                status, _ = request(port, method, path, body, headers, conn)
            except OSError as e:
                status = str(e)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                if status != 200:
                    errors.append(status)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1e3 * x for x in latencies)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "qps": len(ms) / wall, "errors": len(errors)}


def cli_query(image: Path, index: Path, env: dict, repeat: int) -> float:
    """Best wall time in ms of `python -m cli query IMAGE` on ``index``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli", "query", str(image), "--index", str(index),
                        "-k", "10", "--device", "cpu"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def measure(name: str, index: Path, count: int, image: Path, env: dict, args) -> list[str]:
    rows = []
    cli_ms = cli_query(image, index, env, args.repeat)
    data = image.read_bytes()
    server = Server(index, env)
    try:
        kinds = {
            "by id": lambda rng: ("GET", f"/api/items/{int(rng.integers(count))}/neighbours?k=10",
                                  None, {}),
            "upload": lambda rng: ("POST", "/api/search?k=10", *multipart(data, image.name)),
        }
        for kind, make in kinds.items():
            one = None
            for clients in CLIENTS:
                r = load(server.port, clients, args.requests, make)
                one = one or r
                rows.append(f"{name:<10}{kind:<8}{clients:>8}{r['p50']:>10.1f}{r['p99']:>10.1f}"
                            f"{r['qps']:>10.1f}{r['qps'] / one['qps']:>9.1f}x"
                            f"{cli_ms / r['p50']:>10.1f}x{r['errors']:>8}")
        before = server.rss_mib()
        r = load(server.port, 16, args.memory_requests // 16, kinds["by id"])
        after = server.rss_mib()
        rows.append(f"{name}: CLI `retrieve query` {cli_ms:.0f} ms; server RSS {before:.0f} MiB "
                    f"-> {after:.0f} MiB after {args.memory_requests} more by-id requests "
                    f"({r['errors']} errors)")
    finally:
        server.stop()
    return rows


def main() -> None:
    from extract_throughput import fake_imagenet_weights, make_photos, scratch_dir
    from query_latency import SyntheticExtractor

    from indexes.build.incremental import build_index
    from retrieval.config import ExtractConfig
    from retrieval.features import FeatureExtractor
    from retrieval.walk import find_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the synthetic index")
    ap.add_argument("--photos", type=int, default=60, help="real photos in the other index")
    ap.add_argument("--requests", type=int, default=100, help="requests per client")
    ap.add_argument("--memory-requests", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3, help="CLI runs (best taken)")
    args = ap.parse_args()

    work = scratch_dir("retrieve-bench-serve-")
    torch_home = work / "torch"
    fake_imagenet_weights(torch_home)
    os.environ["TORCH_HOME"] = str(torch_home)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    photos = make_photos(args.photos)
    real = FeatureExtractor.load("imagenet", config=ExtractConfig(32, 2, "cpu"))
    build_index(work / "photos-index", find_images([photos[0].parent]), real)

    files = work / "files"
    files.mkdir()
    paths = [files / f"{i:06d}.jpg" for i in range(args.n)]
    for p in paths:
        p.touch()  # the build stats them; the synthetic extractor never opens them
    t = time.perf_counter()
    build_index(work / "synthetic-index", paths, SyntheticExtractor(real.identity(), args.n))
    print(f"synthetic flat index of {args.n} x 4096 vectors built in "
          f"{time.perf_counter() - t:.0f} s; {len(photos)} photos indexed through the network; "
          f"{os.cpu_count()} cores, CPU", flush=True)

    head = (f"{'index':<10}{'kind':<8}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'q/s':>10}"
            f"{'x 1 cl.':>10}{'CLI/p50':>11}{'errors':>8}")
    rows = measure(f"{args.n // 1000}k", work / "synthetic-index", args.n, photos[0], env, args)
    rows += measure("photos", work / "photos-index", len(photos), photos[0], env, args)
    print(head)
    print("\n".join(r for r in rows if not r.endswith(")")))
    print("\n".join(r for r in rows if r.endswith(")")))


if __name__ == "__main__":
    main()
