"""`pip install .` (the README's main job) installs every module: each folder of modules is a
package that setuptools finds with pyproject.toml's settings (a folder without __init__.py
imports from a checkout or an editable install, but is left out of the wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_modules_is_an_installed_package():
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]
    installed = set(find_packages(str(ROOT), include=find["include"]))
    folders = {".".join(p.parent.relative_to(ROOT).parts)
               for top in ("retrieval", "indexes", "cli") for p in (ROOT / top).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders and folders <= installed, sorted(folders - installed)
