"""`retrieve query` start-up imports only what the command uses (behaviour, not time): of an
index with its ONNX export, on the CPU, neither torch nor torchvision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, cli
from conftest import drawn_folder, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_QUERY = ("matplotlib", "retrieval.train", "retrieval.datasets", "retrieval.kernels")


def _modules_after(code: str, preloaded=None) -> set[str]:
    """The modules loaded once CODE has run in a new interpreter, or in a fork of the
    ``preloaded`` process (tests/preloaded.py) for a test of modules that it has not loaded."""
    code += "\nimport gc, json, sys\nprint(json.dumps(sorted(sys.modules)))\ngc.freeze()"
    if preloaded is None:  # gc.freeze(): an exit without a second of collections after torch
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True)
    else:
        out = preloaded.run(code)
        assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_query_command_does_not_import_training_or_plotting(preloaded):
    # what `retrieve query` loads: the group, the command's module, and the modules its
    # body imports, torch's among them for an index without its ONNX export; in a fork of the
    # preloaded process (torch, FAISS, the command line and the build's modules loaded, none of
    # NOT_FOR_QUERY: a module of the query's that loaded one would have loaded it there too)
    modules = _modules_after(
        "import cli.main\n"
        "cli.main.cli.get_command(None, 'query')\n"
        "import indexes.search.searcher, retrieval.onnx_fc7, retrieval.images\n"
        "import retrieval.features, retrieval.weights", preloaded)
    assert "cli.index" in modules
    loaded = sorted(m for m in modules for bad in NOT_FOR_QUERY
                    if m == bad or m.startswith(bad + "."))
    assert loaded == []


def test_query_of_an_exported_index_imports_neither_torch_nor_torchvision(tmp_path):
    """build-index writes the fc7 network in ONNX; a query of a few images on the CPU runs it
    through ONNX Runtime: torch's ~3 s of imports (5 s with torchvision) are not paid."""
    from click.testing import CliRunner

    photos, index = drawn_folder(tmp_path / "photos", 1), tmp_path / "idx"
    built = CliRunner().invoke(cli, ["build-index", str(photos), "--index", str(index), "-q",
                                     "--workers", "0",
                                     "--weights", str(tiny_checkpoint(tmp_path / "c.pt"))])
    assert built.exit_code == 0, built.output
    image = str(photos / "circle" / "0.png")
    modules = _modules_after(
        "from cli.main import cli\n"
        f"cli(['query', {image!r}, '--index', {str(index)!r}], standalone_mode=False)")
    assert not {"torch", "torchvision"} & modules
    assert "onnxruntime" in modules and "faiss" in modules


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
