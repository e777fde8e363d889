"""`retrieve query` start-up imports only what the command uses (behaviour, not time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_QUERY = ("matplotlib", "retrieval.train", "retrieval.datasets", "retrieval.kernels")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_query_command_does_not_import_training_or_plotting():
    # what `retrieve query` loads: the group, the command's module, and the modules its
    # body imports (store, features, images, weights)
    modules = _modules_after(
        "import cli.main\n"
        "cli.main.cli.get_command(None, 'query')\n"
        "import indexes.store, retrieval.features, retrieval.images, retrieval.weights")
    assert "cli.index" in modules
    loaded = sorted(m for m in modules for bad in NOT_FOR_QUERY
                    if m == bad or m.startswith(bad + "."))
    assert loaded == []


def test_group_alone_imports_no_command_module():
    modules = _modules_after("import cli.main")
    assert not {"cli.index", "cli.kernels", "torch", "faiss"} & modules
