"""Shipped checkpoints: the starter model's resolution (`--checkpoint starter`) and stripped exports."""

import hashlib
import shutil
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json

STARTER_NAME = "starter"
# The files a shipped (stripped) checkpoint holds besides the checkpoint's own (checkpoint.CHECKPOINT_FILES);
# training state (optimizer, EMA, metrics) stays behind.
EXPORT_EXTRA_FILES = ("train.yaml",)
MANIFEST_FILE = "MANIFEST.json"  # name -> sha256 and size of every exported file


def starter_dir() -> Path:
    """Where the starter model lives: package data `arc_kit/starter/`, the same place in a checkout and in an
    installed wheel (Kaggle installs the kit's wheel offline)."""
    return Path(__file__).resolve().parent.parent / STARTER_NAME


def resolve_checkpoint(value: str | Path) -> Path:
    """A `--checkpoint` value -> a checkpoint directory. An existing path always wins; the bare name `starter`
    is the shipped starter model; anything else is returned unchanged (the caller reports a missing path)."""
    path = Path(value)
    if path.exists() or str(value) != STARTER_NAME:
        return path
    shipped = starter_dir()
    if (shipped / "config.yaml").is_file():  # checkpoint.CONFIG_FILE (not imported: no torch here)
        return shipped
    raise ArcKitError(
        f"checkpoint '{STARTER_NAME}': no such directory here ({path.resolve()}) and no shipped starter model "
        f"in {shipped} (regenerate it: README, 'Pretrained models')"
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def copy_checkpoint(src: Path, dest: Path, strip_puzzles: bool = False) -> None:
    """Copy a kit checkpoint dir flat; `strip_puzzles` keeps the network and the mean puzzle row only."""
    from arc_kit.model.checkpoint import MODEL_FILE, finish_interrupted_save, strip_puzzle_rows

    finish_interrupted_save(src)  # never copy a save caught half-way through moving its files in
    if not (src / MODEL_FILE).is_file():
        raise ArcKitError(f"{src}: not a kit checkpoint (no model.safetensors)")
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, dest / f.name)
    if strip_puzzles:
        strip_puzzle_rows(dest)


def export_checkpoint(src: Path, dest: Path, force: bool = False) -> dict[str, dict]:
    """Write a shippable copy of checkpoint `src` to `dest`: the network, the mean puzzle row (public tasks'
    rows dropped), the config and the training recipe, plus MANIFEST.json (sha256 and size of each file).
    Built in a sibling folder and swapped in, so `dest` is never half-written. Returns the manifest."""
    from arc_kit.model.checkpoint import (
        CHECKPOINT_FILES,
        MODEL_FILE,
        finish_interrupted_save,
        read_checkpoint_info,
        strip_puzzle_rows,
    )

    src, dest = Path(src), Path(dest)
    if src.is_dir():
        finish_interrupted_save(src)  # export what a read would see, never the set a killed save left half-moved
    if not (src / MODEL_FILE).is_file():
        raise ArcKitError(f"{src}: not a kit checkpoint (no model.safetensors)")
    if dest.exists() and not force and any(dest.iterdir()):
        raise ArcKitError(f"{dest}: not empty (use --force to replace it)")
    if dest.resolve() == src.resolve():
        raise ArcKitError(f"{dest}: is the source checkpoint; choose another output folder")
    tmp = dest.with_name(f".{dest.name}.export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (*CHECKPOINT_FILES, *EXPORT_EXTRA_FILES):
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    strip_puzzle_rows(tmp)
    read_checkpoint_info(tmp)
    manifest = {
        f.name: {"sha256": file_sha256(f), "bytes": f.stat().st_size} for f in sorted(tmp.iterdir()) if f.is_file()
    }
    atomic_write_json(tmp / MANIFEST_FILE, manifest)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def verify_manifest(directory: Path) -> list[str]:
    """Files of an exported checkpoint whose sha256 or size differs from its MANIFEST.json (empty: intact)."""
    import json

    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    bad = []
    for name, entry in manifest.items():
        f = directory / name
        if not f.is_file() or f.stat().st_size != entry["bytes"] or file_sha256(f) != entry["sha256"]:
            bad.append(name)
    return bad
