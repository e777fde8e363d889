"""`retrieve query` start-up imports only what the command uses (behaviour, not time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS

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


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_imports_neither_torch_nor_faiss(command):
    """`retrieve --help` and `retrieve COMMAND --help` answer at once: no torch, no FAISS."""
    args = [command, "--help"] if command else ["--help"]
    modules = _modules_after(
        "from click.testing import CliRunner\nfrom cli.main import cli\n"
        f"result = CliRunner().invoke(cli, {args!r})\nassert result.exit_code == 0, result.output")
    assert not {"torch", "faiss"} & modules


def test_the_group_lists_each_commands_own_summary():
    from click.testing import CliRunner

    from cli.main import cli

    for name, (_, summary) in COMMANDS.items():
        assert cli.get_command(None, name).help.splitlines()[0] == summary, name
    listing = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert all(f"  {name}  " in listing and summary in listing
               for name, (_, summary) in COMMANDS.items())
