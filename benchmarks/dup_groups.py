#!/usr/bin/env python3
"""Making `retrieve duplicates`' groups from its accepted pairs (``groups.near_groups``) at
scale, this checkout beside another (``--code DIR``: an older checkout, the baseline) in one
run: seconds for each and the ratio, and whether both made the same groups.

Two graphs, both made from a seed: ``planted``, N pairs of two files each (the scale test's
planted pairs, fc7 alone); ``clustered``, groups of 2 to 8 copies (80% of their pairs
accepted, differences in hundredths, so that ties are many) and a third as many pairs more
between nearby files (files that pass for several pictures).

    python benchmarks/dup_groups.py                          # 2,500 to 10,000 pairs
    python benchmarks/dup_groups.py --sizes 100000 --code /tmp/older-checkout
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def graph(kind: str, n: int, seed: int = 0) -> tuple[dict, dict, dict]:
    """(items, accepted, pairs): ``n`` planted pairs, or about ``n`` files in clusters."""
    from retrieval.copies import Match

    rng = random.Random(seed)
    if kind == "planted":
        items = {i: f"/{i:08d}" for i in range(2 * n)}
        accepted = {(2 * i, 2 * i + 1): None for i in range(n)}
        return items, accepted, {pair: 0.01 for pair in accepted}
    items = {i: f"/{i:08d}" for i in range(n)}
    accepted, start = {}, 0
    while start < n - 8:
        size = rng.randint(2, 8)
        for a in range(start, start + size):
            for b in range(a + 1, start + size):
                if rng.random() < 0.8:
                    accepted[a, b] = Match(0.99, round(rng.random() * 0.1, 2))
        start += size
    for _ in range(n // 3):
        a = rng.randrange(n)
        b = min(n - 1, a + rng.randint(1, 30))
        if a != b:
            accepted[a, b] = Match(0.95, round(rng.random() * 0.2, 2))
    return items, accepted, {pair: 0.1 for pair in accepted}


def measure(kind: str, n: int) -> dict:
    """Groups made from ``graph(kind, n)`` by the checkout this process imports."""
    from indexes.duplicates import groups

    groups._facts = lambda path: (100, 100, int(path[1:]) % 7)  # no files: sizes from names
    items, accepted, pairs = graph(kind, n)
    start = time.perf_counter()
    made = groups.near_groups(accepted, pairs, items, lambda kept, m: None)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(repr([[m.path for m in g.members] for g in made]).encode())
    return {"seconds": seconds, "groups": len(made), "pairs": len(accepted),
            "digest": digest.hexdigest()[:12]}


def run(code: Path, kind: str, n: int, timeout: float) -> dict | None:
    """``measure`` in a fresh process importing ``code``; None past ``timeout`` seconds."""
    script = (f"import sys, json; sys.path.insert(0, {str(code)!r}); "
              f"sys.path.insert(1, {str(ROOT / 'benchmarks')!r}); import dup_groups; "
              f"print(json.dumps(dup_groups.measure({kind!r}, {n})))")
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[2500, 5000, 10000])
    ap.add_argument("--kinds", nargs="+", choices=("planted", "clustered"),
                    default=["planted", "clustered"])
    ap.add_argument("--code", type=Path, help="another checkout: the baseline")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    args = ap.parse_args()
    print(f"{'graph':10} {'n':>8} {'pairs':>8} {'groups':>8} {'this s':>8} "
          f"{'base s':>8} {'ratio':>7}  same groups")
    for kind in args.kinds:
        for n in args.sizes:
            ours = run(ROOT, kind, n, args.timeout)
            base = run(args.code, kind, n, args.timeout) if args.code else None
            if ours is None:
                print(f"{kind:10} {n:8} over {args.timeout:.0f} s")
                continue
            cells = (f"{base['seconds']:8.2f} {base['seconds'] / ours['seconds']:6.1f}x  "
                     f"{'yes' if base['digest'] == ours['digest'] else 'NO'}"
                     if base else f"{'-' if args.code is None else 'timeout':>8}")
            print(f"{kind:10} {n:8} {ours['pairs']:8} {ours['groups']:8} "
                  f"{ours['seconds']:8.2f} {cells}", flush=True)


if __name__ == "__main__":
    main()
