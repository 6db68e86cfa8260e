"""Kaggle API: push the bundle's datasets and kernel, submit its output; a recording fake client for --dry-run."""

import contextlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import read_json
from arc_kit.kaggle.meta import _check_ref, check_bundle

CREDENTIALS_HELP = (
    "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or put "
    "kaggle.json in ~/.kaggle/ or $KAGGLE_CONFIG_DIR (kaggle.com > Settings > API); "
    "--dry-run needs none"
)


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

    def __init__(self) -> None:
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
    tmp = ""  # the dry run's empty home (a real run uses none)
    if dry_run:
        tmp = tempfile.mkdtemp(prefix="arc-kit-kaggle-")
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
    api.build_kaggle_client = lambda: fake  # every request goes to the recorder

    def upload_blob(path, *a, **k):  # recorded, never sent
        fake.requests.append(("upload", path))
        return f"dry-run:{Path(path).name}"

    api._upload_blob = upload_blob

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
    except (ArcKitError, TypeError, AttributeError, NameError, AssertionError):
        raise  # ours, or a call that does not fit the client: a bug to report (exit 3), not a Kaggle answer
    except Exception as e:  # the client's own errors (HTTP, auth, quota) come in many types
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


def push(
    bundle_dir: str | Path,
    dry_run: bool = False,
    notes: str = "arc-kit bundle",
    datasets: bool = True,
    kernel: bool = True,
    log=print,
) -> PushReport:
    """Upload both datasets (new, or a new version when they exist) and push the kernel."""
    out = Path(bundle_dir)
    problems = check_bundle(out)
    if problems:
        raise ArcKitError(problems[0])
    meta = read_json(out / "kernel" / "kernel-metadata.json", "kernel metadata")
    api, fake = kaggle_api(dry_run, owner=meta["id"].split("/")[0])
    report = PushReport(dry_run)
    for name in ("wheels", "checkpoint") if datasets else ():
        folder = out / name
        if not folder.is_dir():
            continue
        ref = read_json(folder / "dataset-metadata.json", "dataset metadata")["id"]
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
        report.actions.append(
            f"pushed kernel {meta['id']} (version {getattr(res, 'versionNumber', None)}, {getattr(res, 'url', '')})"
        )
        log(f"{'(dry run) ' if dry_run else ''}{report.actions[-1]}")
    report.requests = fake.requests if fake else []
    return report


def submit(
    bundle_dir: str | Path,
    dry_run: bool = False,
    message: str = "arc-kit",
    kernel: str | None = None,
    version: int | None = None,
    competition: str | None = None,
    file_name: str = "submission.json",
    log=print,
) -> PushReport:
    """Submit a pushed kernel's output to the (code) competition named in the kernel metadata."""
    meta_file = Path(bundle_dir) / "kernel" / "kernel-metadata.json"
    meta = read_json(meta_file, "kernel metadata") if meta_file.is_file() else {}
    kernel = kernel or meta.get("id")
    competition = competition or (meta.get("competition_sources") or [None])[0]
    if not kernel or not competition:
        raise ArcKitError(f"{meta_file}: no kernel id or competition (pass --kernel and --competition)")
    problems = _check_ref(kernel, "kernel", 5)
    if problems:
        raise ArcKitError(problems[0])
    api, fake = kaggle_api(dry_run, owner=kernel.split("/")[0])
    _call(f"submit {kernel}", api.competition_submit_code, file_name, message, competition, kernel, version, quiet=True)
    report = PushReport(
        dry_run, [f"submitted {kernel} version {version or 'latest'} output {file_name} to {competition}"]
    )
    log(f"{'(dry run) ' if dry_run else ''}{report.actions[-1]}")
    report.requests = fake.requests if fake else []
    return report
