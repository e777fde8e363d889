"""manifest.json, and the checks of what an index was built with against what is asked of it.

The settings recorded with the vectors (weights and their sha256, layer, dim, transform,
model, factory, normalisation) are the database's; the manifest is their copy for people and
tools, rewritten after each commit. A build with other settings, or a query whose weights are
not the index's, is refused here with a message that says what differs.
"""

from __future__ import annotations

import os
from pathlib import Path

from retrieval.config import IMAGENET
from retrieval.errors import IndexCorrupt, IndexMismatch, WeightsError

from indexes.store import files

FORMAT = "retrieve-index"
VERSION = 1
# Settings that change the vectors or the index type: another value needs --rebuild.
MATCHING_KEYS = ("sha256", "layer", "dim", "transform", "model", "factory", "normalize")
REBUILD = "rebuild the index with build-index --rebuild"


def contents(store) -> dict:
    """The manifest as it should be for ``store``'s committed generation."""
    return {
        "format": FORMAT, "version": VERSION, "generation": store.generation,
        "index_file": store.index_path.name, "database": files.DATABASE,
        "count": store.count, "built_at": store.meta("built_at"),
        **(store.settings or {}),
    }


def write(store) -> None:
    files.write_json(store.folder / files.MANIFEST, contents(store))


def read(folder: Path) -> dict:
    """manifest.json as on disk; IndexCorrupt naming it when missing or damaged."""
    m = files.read_json(folder, files.MANIFEST)
    if m.get("format") != FORMAT:
        raise files.corrupt(folder, files.MANIFEST, "not a retrieve index manifest")
    return m


def generation_on_disk(folder: Path) -> int | None:
    """The generation manifest.json describes; None when it is missing or unreadable."""
    try:
        return files.read_json(folder, files.MANIFEST).get("generation")
    except IndexCorrupt:
        return None


def check_settings(folder: Path, recorded: dict | None, settings: dict) -> None:
    """IndexMismatch naming what ``settings`` changes in an index built with ``recorded``."""
    if recorded is None:
        return
    differ = [k for k in MATCHING_KEYS if recorded.get(k) != settings.get(k)]
    if not differ:
        return
    what = ", ".join(_difference(k, recorded, settings) for k in differ)
    raise IndexMismatch(f"{folder} was built with other settings ({what}); use the same "
                        "ones, or --rebuild to replace the index")


def _difference(key: str, old: dict, new: dict) -> str:
    if key == "sha256":
        return (f"weights {old.get('weights')} sha256 {str(old.get('sha256'))[:12]}..., "
                f"now {new.get('weights')} sha256 {str(new.get('sha256'))[:12]}...")
    return f"{key} {old.get(key)!r}, now {new.get(key)!r}"


def weights_ref(settings: dict) -> tuple[str, tuple[list[int], str] | None]:
    """The weights an index was built with: (source, trusted), ``trusted`` being the
    (stamp, sha256) recorded with them (a query need not hash an unchanged file again).
    WeightsError when none are recorded or the file is gone."""
    source = settings.get("weights")
    if not source:
        raise WeightsError(f"the index records no weights; {REBUILD}")
    if source != IMAGENET and not os.path.isfile(source):
        raise WeightsError(f"{source}: the weights this index was built with are missing; "
                           "restore the file, or rebuild the index with build-index --weights "
                           "CKPT --rebuild")
    stamp = settings.get("weights_stamp")
    return source, ((stamp, settings["sha256"]) if stamp else None)


def check_identity(settings: dict, identity: dict) -> None:
    """IndexMismatch unless ``identity`` (what an extractor makes: weights, sha256, layer,
    dim) makes the vectors the index holds."""
    source, want, got = identity.get("weights"), str(settings.get("sha256")), identity.get("sha256")
    if got != want:
        raise IndexMismatch(f"{source}: the weights changed since the index was built (sha256 "
                            f"{str(got)[:12]}... instead of {want[:12]}...); {REBUILD}")
    if identity.get("layer") != settings.get("layer"):
        raise IndexMismatch(f"the index holds {settings.get('layer')} vectors; these weights make "
                            f"{identity.get('layer')}; {REBUILD}")
    if identity.get("dim") != settings.get("dim"):
        raise IndexMismatch(f"the index holds {settings.get('dim')}-d vectors; these weights make "
                            f"{identity.get('dim')}-d ones; {REBUILD}")
