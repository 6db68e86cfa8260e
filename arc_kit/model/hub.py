"""Published TRM/HRM checkpoints: fetched from the Hugging Face hub (resumable, verified), imported into the kit."""

# huggingface_hub does the hub side: URLs, HF_ENDPOINT mirrors, tokens, the metadata HEAD (redirects,
# LFS sha256 ETag, size, commit) and the ranged GET with its in-run retries. It does not keep a partial
# file across runs (its temporary file is unique to a process and deleted on failure), so the transfer
# goes into `.DIR.download/NAME.partial` beside the output and a re-run asks for the rest with a Range
# request. A file gets its final name only after its size and checksum are verified; the import writes
# into `.DIR.importing` and is renamed into place, so nothing half-written ever looks complete.

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_text
from arc_kit.shipped_identifiers import load_identifier_list

DEFAULT_ENDPOINT = "https://huggingface.co"
INSTALL_HINT = "pip install 'arc-kit[hub]' (or: pip install huggingface_hub)"


@dataclass
class PublishedCheckpoint:
    """Where a published checkpoint lives and what it must be (configs/checkpoints/*.yaml)."""

    description: str = ""
    repo: str = "arcprize/trm_arc_prize_verification"
    repo_type: str = "model"
    revision: str = "main"
    endpoint: str | None = None  # hub URL; None: $HF_ENDPOINT, else https://huggingface.co
    checkpoint: str = ""  # the reference step file (torch.save state dict), path in the repo
    config: str = ""  # its all_config.yaml, path in the repo ("" when `arch` stands in for it)
    arch: dict[str, Any] | None = None  # the all_config.yaml `arch:` section, for repos that publish none (HRM's)
    size: int | None = None  # expected bytes of the step file; None: whatever the hub reports
    sha256: str | None = None  # pin the step file's sha256; None: the hub's LFS metadata alone
    identifiers: str = ""  # row names: shipped list (arc1, arc2), compact .npz or identifiers.json[.gz];
    # "none": no list exists: rows are numbered, and uses that need names are refused (TTT needs none)


def load_preset(name: str, overrides=()) -> PublishedCheckpoint:
    """A shipped preset (`arc-agi-1`, `arc-agi-2`) or a YAML file, with key=value overrides."""
    # Text settings keep the text as typed: YAML would read a hex digest or commit such as 0123e45 as a number.
    text = {"description", "repo", "repo_type", "revision", "endpoint", "checkpoint", "config", "sha256", "identifiers"}
    overrides = [
        f"{k}={json.dumps(v)}" if k.strip() in text and v.strip() not in ("null", "~") else f"{k}={v}"
        for k, _, v in (o.partition("=") for o in overrides)
    ]
    spec = load_config(PublishedCheckpoint, name, overrides, subdir="checkpoints")
    for key in ("repo", "revision", "checkpoint", "identifiers"):
        if not getattr(spec, key):
            raise ArcKitError(f"{name}: setting '{key}' is empty")
    if bool(spec.config) == bool(spec.arch):
        raise ArcKitError(f"{name}: give exactly one of 'config' (a path in the repo) and 'arch' (its arch: section)")
    if spec.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", spec.sha256):
        raise ArcKitError(f"{name}: sha256 must be 64 lowercase hex digits")
    return spec


def _hub():
    """huggingface_hub, imported on first use: it is an optional extra."""
    try:
        import httpx2
        import huggingface_hub
        from huggingface_hub import errors
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers
    except ImportError:
        raise ArcKitError(f"checkpoint download needs the huggingface_hub package: {INSTALL_HINT}") from None
    return huggingface_hub, errors, http_get, build_hf_headers, httpx2


def _log(msg: str) -> None:
    print(f"checkpoint download: {msg}", file=sys.stderr, flush=True)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n:,} bytes"


def _http_error(e, url: str, spec: PublishedCheckpoint) -> ArcKitError:
    """One line for an HTTP error answer: what was tried and which setting to look at."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    name = type(e).__name__
    if name in ("RepositoryNotFoundError", "GatedRepoError") or status in (401, 403):
        return ArcKitError(
            f"{url}: HTTP {status}: repository {spec.repo} not found or not accessible "
            "(private or gated repositories need `hf auth login` or HF_TOKEN)"
        )
    if status == 404:
        what = {"RevisionNotFoundError": f"revision {spec.revision!r}", "RemoteEntryNotFoundError": "file"}.get(
            name, "file"
        )
        return ArcKitError(f"{url}: HTTP 404: {what} not found (check the repo, revision and path settings)")
    return ArcKitError(f"{url}: HTTP {status}: {' '.join(str(e).split())[:160]}")


def _expected_digest(etag: str | None, url: str) -> tuple[str, str]:
    """(kind, hex) of the hub's checksum: an LFS file's ETag is its sha256, a git file's its git blob sha1."""
    etag = (etag or "").lower()
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        return "sha256", etag
    if re.fullmatch(r"[0-9a-f]{40}", etag):
        return "git-sha1", etag
    raise ArcKitError(f"{url}: the hub gave no checksum (ETag {etag or 'missing'!r}): refusing an unverifiable file")


def _file_digest(path: Path, kind: str) -> str:
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_space(directory: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < need:
        raise ArcKitError(f"{directory}: not enough disk space for {what}: {_gb(need)} needed, {_gb(free)} free")


def fetch_file(
    spec: PublishedCheckpoint,
    path: str,
    staging: Path,
    want_size: int | None = None,
    want_sha256: str | None = None,
    import_bytes: int = 0,
) -> tuple[Path, dict]:
    """Download `path` of the repo into `staging`, resuming a `.partial` left by an earlier run; verify size and
    checksum; return (the verified file, provenance). `import_bytes`: extra room the import will need."""
    hf, errors, http_get, build_hf_headers, httpx2 = _hub()
    endpoint = (spec.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    url = hf.hf_hub_url(spec.repo, path, repo_type=spec.repo_type, revision=spec.revision, endpoint=endpoint)
    try:
        meta = hf.get_hf_file_metadata(url)
    except httpx2.TransportError as e:
        raise ArcKitError(
            f"{url}: cannot reach the hub at {endpoint} ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
            "check the network, or set HF_ENDPOINT to a mirror"
        ) from None
    except errors.OfflineModeIsEnabled:
        raise ArcKitError(f"{url}: HF_HUB_OFFLINE is set: unset it to download") from None
    except errors.HfHubHTTPError as e:
        raise _http_error(e, url, spec) from None
    if not meta.commit_hash:
        raise ArcKitError(f"{url}: not a Hugging Face hub answer (no X-Repo-Commit header): check HF_ENDPOINT")
    kind, digest = _expected_digest(meta.etag, url)
    size = meta.size
    if want_size is not None and size is not None and size != want_size:
        raise ArcKitError(
            f"{url}: the hub reports {size:,} bytes, expected {want_size:,} (setting 'size'): "
            "a different file than the settings describe"
        )
    if want_sha256 is not None and (kind != "sha256" or digest != want_sha256):
        raise ArcKitError(f"{url}: the hub's checksum {kind} {digest} differs from the pinned sha256 {want_sha256}")
    size = size if size is not None else want_size
    info = {"url": url, "commit": meta.commit_hash, kind: digest, "bytes": size}
    final = staging / f"{path.replace('/', '__')}.{digest[:16]}"  # named by content: a changed file starts afresh
    if final.is_file():
        _log(f"{path}: already downloaded and verified ({final})")
        return final, info
    partial = final.with_name(final.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    if size is not None:
        _check_space(staging, size - have + import_bytes, f"{path} (+ its import)" if import_bytes else path)
    _log(
        f"{path}: {_gb(size) if size is not None else 'unknown size'} from {url}"
        + (f", resuming at {_gb(have)}" if have else "")
    )
    headers = build_hf_headers()
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed CDN URL: the token stays on the hub (as huggingface_hub does)
    try:
        with open(partial, "ab") as f:
            http_get(meta.location, f, resume_size=have, headers=headers, expected_size=size, displayed_filename=path)
    except httpx2.TransportError as e:
        kept = partial.stat().st_size if partial.exists() else 0
        raise ArcKitError(
            f"{meta.location}: transfer failed ({type(e).__name__}); {_gb(kept)} kept in {partial}: "
            "run the same command again to resume"
        ) from None
    except errors.HfHubHTTPError as e:  # from the file's location (often a signed CDN URL that can expire)
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status == 416:  # the partial file does not fit the remote one: start afresh next time
            partial.unlink(missing_ok=True)
        kept = partial.stat().st_size if partial.exists() else 0
        raise ArcKitError(
            f"{meta.location}: HTTP {status} while downloading {path}; {_gb(kept)} kept: run again to resume"
        ) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ArcKitError(
                f"{partial}: disk full while downloading ({_gb(partial.stat().st_size)} kept): "
                "free some space and run again to resume"
            ) from None
        if e.errno is not None:
            raise ArcKitError(f"{partial}: cannot write: {e.strerror}") from None
        # huggingface_hub's size check (errno None): judged below from the file itself
    got = partial.stat().st_size
    if size is not None and got != size:
        if got > size:
            partial.unlink()
            raise ArcKitError(f"{meta.location}: received {got:,} bytes, expected {size:,}: deleted, run again")
        raise ArcKitError(f"{meta.location}: transfer ended at {got:,} of {size:,} bytes: run again to resume")
    _log(f"{path}: verifying {kind}")
    actual = _file_digest(partial, kind)
    if actual != digest:
        partial.unlink()
        raise ArcKitError(
            f"{url}: checksum mismatch: the download's {kind} is {actual}, the hub says {digest}; "
            "the corrupt file was deleted: run again"
        )
    os.replace(partial, final)
    return final, info


def _dirs(out: Path) -> tuple[Path, Path]:
    """The download and import folders, beside `out` (same file system: the final rename is atomic)."""
    return out.parent / f".{out.name}.download", out.parent / f".{out.name}.importing"


def download_checkpoint(
    spec: PublishedCheckpoint, out: str | Path, force: bool = False, keep_download: bool = False, name: str = ""
):
    """Fetch, verify and import one published checkpoint into the kit checkpoint directory `out`."""
    from arc_kit.model.checkpoint import CONFIG_FILE
    from arc_kit.model.reference import import_reference

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ArcKitError(f"{out}: already exists (use --force to replace it)")
    # before any transfer: a bad setting fails fast
    names = None if spec.identifiers == "none" else load_identifier_list(spec.identifiers)
    staging, importing = _dirs(out)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        if spec.arch:  # the repo publishes no all_config.yaml: the preset's arch section stands in for it
            config, config_info = staging / "all_config.yaml", {"from": "the preset's arch section"}
            atomic_write_text(config, yaml.safe_dump({"arch": spec.arch}, sort_keys=False))
        else:
            config, config_info = fetch_file(spec, spec.config, staging)
        step, step_info = fetch_file(
            spec, spec.checkpoint, staging, spec.size, spec.sha256, import_bytes=spec.size or 0
        )
    except BaseException:
        if not any(staging.iterdir()):
            staging.rmdir()  # nothing to resume: leave no trace
        raise
    if importing.exists():
        shutil.rmtree(importing)  # left by an interrupted import
    if names is None:
        _log(f"importing {spec.checkpoint}: no identifier list exists, its puzzle rows stay numbered (row0, ...)")
    else:
        _log(f"importing {spec.checkpoint} with {len(names):,} puzzle names ({spec.identifiers})")
    try:
        info = import_reference(step, config, importing, identifiers=names, identifiers_source=spec.identifiers)
        # provenance: the hub file, not the download folder that is about to go away
        doc = yaml.safe_load((importing / CONFIG_FILE).read_text())
        doc["source"] = {
            "hub": name or spec.repo,
            "repo": spec.repo,
            "revision": spec.revision,
            "checkpoint": {"path": spec.checkpoint, **step_info},
            "config": {"path": spec.config or None, **config_info},
            "identifiers": spec.identifiers,
        }
        atomic_write_text(importing / CONFIG_FILE, yaml.safe_dump(doc, sort_keys=False))
    except OSError as e:
        shutil.rmtree(importing, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise ArcKitError(
                f"{importing}: disk full while importing: free some space and run again "
                f"(the download in {staging} is kept)"
            ) from None
        raise ArcKitError(f"{importing}: cannot write: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(importing, ignore_errors=True)
        raise
    if out.exists():  # --force: swap, so a failure here still leaves one whole checkpoint
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(importing, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(importing, out)
    if not keep_download:
        shutil.rmtree(staging, ignore_errors=True)
    info.path = out
    return info
