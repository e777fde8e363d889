"""`retrieve ARGS...` with faiss-gpu from the carried bundle: what benchmarks/gpu_check.py's
torchrun section launches (torchrun's children import faiss before anything could boot it)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
bundle = os.environ.get("FAISS_BUNDLE_DIR")
if bundle:  # unpacked by gpu_check.boot_faiss
    sys.path.insert(0, bundle)
    import faiss_boot

    faiss_boot.boot()

from cli.main import cli  # noqa: E402  (after faiss is booted)

cli(prog_name="retrieve")
