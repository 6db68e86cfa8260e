"""Kaggle metadata: dataset and kernel metadata files and offline checks of the kaggle client's rules."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import read_json
from arc_kit.kaggle.settings import DEFAULT_SLUG

# Rules the kaggle client (kaggle_api_extended.py, 2.x) and Kaggle's metadata docs enforce.
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # _validate_slug_syntax
OWNER_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")  # owner slugs may hold underscores
LICENSES = (
    "CC0-1.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-SA-4.0",
    "GPL-2.0",
    "ODbL-1.0",
    "DbCL-1.0",
    "copyright-authors",
    "other",
    "unknown",
    "CC-BY-4.0",
    "CC-BY-NC-4.0",
    "PDDL",
    "CC-BY-3.0",
    "CC-BY-3.0-IGO",
    "US-Government-Works",
    "CC-BY-NC-SA-3.0-IGO",
    "CDLA-Permissive-1.0",
    "CDLA-Sharing-1.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0",
    "ODC-BY-1.0",
    "LGPL-3.0",
    "AGPL-3.0",
    "FDL-1.3",
    "EU-ODP-Legal-Notice",
    "apache-2.0",
    "GPL-3.0",
)
# Kaggle's accelerator names for `machine_shape`; `kaggle bundle --machine-shape` accepts these (or, with
# --new-machine-shape, a name Kaggle added since).
KNOWN_SHAPES = ("NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X4", "NvidiaH100", "TpuV5E8")
KERNEL_BOOLS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
NOTEBOOK = "arc_kit_submission.ipynb"


def slugify(title: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", title.lower())).strip("-")


@dataclass
class BundleNames:
    """Who owns the uploads and what they are called; every slug follows from a title."""

    owner: str
    competition: str = DEFAULT_SLUG
    machine_shape: str = "NvidiaL4"
    wheels_title: str = "arc-kit wheels"
    checkpoint_title: str = "arc-kit checkpoint"
    kernel_title: str = "arc-kit submission"
    license: str = "apache-2.0"

    def ref(self, title: str) -> str:
        return f"{self.owner}/{slugify(title)}"


def check_names(names: BundleNames, allow_new_shape: bool = False) -> list[str]:
    """Every problem of the names a bundle would write, found before anything is written."""
    out = []
    if not OWNER_RE.match(names.owner):
        out.append(f"--owner {names.owner!r}: a Kaggle username is lowercase letters, digits, '-' or '_'")
    if not SLUG_RE.match(names.competition):
        out.append(
            f"--competition {names.competition!r}: not a competition slug (lowercase words joined by '-', "
            f"e.g. {DEFAULT_SLUG})"
        )
    if not re.match(r"^[A-Za-z0-9]+$", names.machine_shape):
        out.append(f"--machine-shape {names.machine_shape!r}: expected a name like {', '.join(KNOWN_SHAPES)}")
    elif names.machine_shape not in KNOWN_SHAPES and not allow_new_shape:
        out.append(
            f"--machine-shape {names.machine_shape!r}: not a known Kaggle machine shape "
            f"({', '.join(KNOWN_SHAPES)}; --new-machine-shape accepts another)"
        )
    datasets = [names.ref(names.wheels_title), names.ref(names.checkpoint_title)]
    for ref, title in zip(datasets, (names.wheels_title, names.checkpoint_title), strict=False):
        out += check_dataset_metadata(dataset_metadata(ref, title, names.license, "-"))
    out += check_kernel_metadata(kernel_metadata(names, datasets))
    return list(dict.fromkeys(out))


def dataset_metadata(ref: str, title: str, license: str, description: str) -> dict:
    return {"title": title, "id": ref, "licenses": [{"name": license}], "description": description}


def kernel_metadata(names: BundleNames, datasets: list[str]) -> dict:
    # Every boolean written explicitly: `kaggle kernels push` sends enable_internet=True when it is missing.
    return {
        "id": names.ref(names.kernel_title),
        "title": names.kernel_title,
        "code_file": NOTEBOOK,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": datasets,
        "competition_sources": [names.competition],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": names.machine_shape,
    }


def _check_ref(ref, what: str, min_len: int, max_len: int = 50) -> list[str]:
    if not isinstance(ref, str) or ref.count("/") != 1:
        return [f"{what} id {ref!r}: expected 'owner/slug'"]
    owner, slug = ref.split("/")
    out = [] if OWNER_RE.match(owner) else [f"{what} id {ref!r}: owner must be lowercase letters, digits, '-' or '_'"]
    if not SLUG_RE.match(slug):
        out.append(f"{what} id {ref!r}: slug must be lowercase letters and digits joined by single '-'")
    if not min_len <= len(slug) <= max_len:
        out.append(f"{what} id {ref!r}: slug must be {min_len}-{max_len} characters")
    return out


def check_folder(folder: Path, meta_name: str) -> list[str]:
    """An upload folder: the metadata file, at least one other file, and no subfolders (uploads skip them)."""
    if not folder.is_dir():
        return [f"{folder}: not a folder"]
    out = [f"{folder / p.name}: subfolder would be skipped by the upload" for p in folder.iterdir() if p.is_dir()]
    if not (folder / meta_name).is_file():
        out.append(f"{folder}: {meta_name} missing")
    if not [p for p in folder.iterdir() if p.is_file() and p.name != meta_name]:
        out.append(f"{folder}: nothing to upload")
    return out


def check_dataset_metadata(meta: dict, folder: Path | None = None) -> list[str]:
    """The checks of `kaggle datasets create` (dataset_create_new) plus the documented licence names."""
    where = f"{folder / 'dataset-metadata.json'}: " if folder else "dataset metadata: "
    out = _check_ref(meta.get("id"), "dataset", 6)
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        out.append(f"title {title!r}: must be 6-50 characters")
    lic = meta.get("licenses")
    if not isinstance(lic, list) or len(lic) != 1 or not isinstance(lic[0], dict):
        out.append('licenses: exactly one licence is required, e.g. [{"name": "apache-2.0"}]')
    elif lic[0].get("name") not in LICENSES:
        out.append(f"licence {lic[0].get('name')!r}: not a Kaggle licence name ({', '.join(LICENSES[:4])}, ...)")
    sub = meta.get("subtitle")
    if sub is not None and not 20 <= len(str(sub)) <= 80:
        out.append("subtitle: must be 20-80 characters")
    paths = [r.get("path") for r in meta.get("resources") or [] if isinstance(r, dict)]
    out += [f"resource path {p!r} listed twice" for p in set(paths) if paths.count(p) > 1]
    if folder is not None:
        out += [f"resource path {p!r}: no such file" for p in paths if not (folder / str(p)).is_file()]
    return [where + p for p in out]


def check_kernel_metadata(meta: dict, folder: Path | None = None) -> list[str]:
    """The checks of `kaggle kernels push`, plus what a competition submission needs (internet off, GPU on)."""
    where = f"{folder / 'kernel-metadata.json'}: " if folder else "kernel metadata: "
    out = _check_ref(meta.get("id"), "kernel", 5)
    title = meta.get("title")
    if not isinstance(title, str) or len(title) < 5:
        out.append(f"title {title!r}: must be at least 5 characters")
    elif isinstance(meta.get("id"), str) and slugify(title) != meta["id"].split("/")[-1]:
        out.append(f"title {title!r} does not resolve to the id's slug ({slugify(title)})")
    if meta.get("language") != "python":
        out.append(f"language {meta.get('language')!r}: expected 'python'")
    if meta.get("kernel_type") != "notebook":
        out.append(f"kernel_type {meta.get('kernel_type')!r}: expected 'notebook'")
    for key in KERNEL_BOOLS:
        if not isinstance(meta.get(key), bool):
            out.append(f"{key}: must be written explicitly as true or false, got {meta.get(key)!r}")
    if meta.get("enable_internet") is not False:
        out.append("enable_internet: must be false (competition reruns have no internet)")
    if meta.get("enable_gpu") is not True:
        out.append("enable_gpu: must be true")
    for ref in meta.get("dataset_sources") or []:
        out += _check_ref(ref, "dataset source", 3)
    comps = meta.get("competition_sources")
    if not isinstance(comps, list) or not comps or not all(isinstance(c, str) and SLUG_RE.match(c) for c in comps):
        out.append(f"competition_sources {comps!r}: expected a list of competition slugs")
    shape = meta.get("machine_shape")
    if shape is not None and not (isinstance(shape, str) and re.match(r"^[A-Za-z0-9]+$", shape)):
        out.append(f"machine_shape {shape!r}: expected a name like {', '.join(KNOWN_SHAPES)}")
    code = meta.get("code_file")
    if not code:
        out.append("code_file: missing")
    elif folder is not None:
        try:
            json.loads((folder / code).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            out.append(f"code_file {code!r}: missing or not a JSON notebook")
    return [where + p for p in out]


def check_bundle(out_dir: str | Path) -> list[str]:
    """Every problem of a bundle folder (wheels/, checkpoint/, kernel/), one line each."""
    out_dir = Path(out_dir)
    problems = []
    checks = [
        ("wheels", "dataset-metadata.json", check_dataset_metadata),
        ("checkpoint", "dataset-metadata.json", check_dataset_metadata),
        ("kernel", "kernel-metadata.json", check_kernel_metadata),
    ]
    for name, meta_name, check in checks:
        folder = out_dir / name
        if name == "checkpoint" and not folder.exists():
            continue  # bundled without a checkpoint: the config's model.checkpoint (starter) or from scratch
        problems += check_folder(folder, meta_name)
        if (folder / meta_name).is_file():
            try:  # a hand-edited, malformed metadata file is a problem line, not a traceback
                meta = read_json(folder / meta_name, meta_name)
            except ArcKitError as e:
                problems.append(str(e))
                continue
            problems += check(meta if isinstance(meta, dict) else {}, folder)
    if not list((out_dir / "wheels").glob("arc_kit-*.whl")):
        problems.append(f"{out_dir / 'wheels'}: no arc_kit wheel")
    return problems
