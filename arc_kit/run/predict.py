"""Full-protocol prediction: every test input under every augmented puzzle a checkpoint was trained on."""

# A TRM checkpoint knows each of its training tasks under up to 1001 augmented puzzles (the identity
# plus up to 1000 colour-permutation x dihedral versions), one puzzle-embedding row each. The
# reference evaluation runs every test input under all of them and votes. Here:
#   puzzles.json (row -> name) -> per selected task its (row, augmentation) views, identity first
#   -> load only those rows of the table (a compact local table: local row i = global rows[i])
#   -> batches across tasks, rank-major (every task's view 0, then every view 1, ...)
#   -> model.predict in eval mode (all halt_max_steps steps, or --early-halt)
#   -> crop, map back with the view's inverse, append to OUT/predictions.jsonl (resumable).

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json, check_writable_dir, read_json
from arc_kit.crops import task_crop
from arc_kit.data import TaskSet, task_fits
from arc_kit.identifiers import rows_unnamed, task_puzzles, unnamed_rows_error
from arc_kit.infer import InferOptions, plan_views, run_inference
from arc_kit.model.checkpoint import fingerprint
from arc_kit.model.device import resolve_device
from arc_kit.model.verify import verify_checkpoint
from arc_kit.predictions import EMPTY_VIEWS_FILE as EMPTY
from arc_kit.predictions import PREDICTIONS_FILE as PREDICTIONS
from arc_kit.predictions import done_view_keys
from arc_kit.run.directory import refuse_changed

RUN_FILE = "predict.json"  # settings of the run that wrote predictions.jsonl: a resume must match them


@dataclass
class PredictConfig:
    views: int | None = None  # at most this many views per task (identity first); None: all the table has
    batch_size: int = 256  # sequences per forward pass
    early_halt: bool = False  # stop a sequence at the first step with q_halt > 0
    all_steps: bool = False  # one prediction per supervision step instead of only the final one
    compile: bool = False  # torch.compile the inference step (TRM.compile_inference)
    device: str | None = None  # "cpu" / "cuda"; None: cuda when available
    dtype: str | None = None  # forward dtype override; None: the checkpoint's on GPU, float32 on CPU
    progress: bool = True  # tqdm bar on stderr


def subsample(views: list[tuple[int, str]], n: int | None) -> list[tuple[int, str]]:
    """The first `n` views (identity first). The table's order is the builder's random draw order, so a
    prefix is a uniform random sample, and a smaller --views run is a subset of a larger one (resume-friendly)."""
    return views if n is None else views[:n]


def compact_table(chosen: dict[str, list[tuple[int, str]]]) -> tuple[list[int], dict[str, int], dict[str, int]]:
    """(global rows to load, name -> local row, name -> global row). Local row 0 is global row 0 (<blank>), then
    the needed rows in table order: the model gets a table of len(rows) rows instead of the checkpoint's ~1M."""
    rows = sorted({0} | {r for lst in chosen.values() for r, _ in lst})
    local = {g: i for i, g in enumerate(rows)}
    local_row = {name: local[r] for lst in chosen.values() for r, name in lst}
    global_row = {name: r for lst in chosen.values() for r, name in lst}
    return rows, local_row, global_row


def _check_run_file(out_dir: Path, settings: dict) -> None:
    """Refuse to append to predictions made by another model or with other step settings (run.directory's guard)."""
    path = out_dir / RUN_FILE
    if (out_dir / PREDICTIONS).exists() and path.exists():
        refuse_changed(
            out_dir,
            read_json(path, "predict run file"),
            settings,
            {"model": "checkpoint", "early_halt": "--early-halt", "all_steps": "--all-steps"},
            "use another --out",
        )


def load_model(model_dir: Path, rows: list[int], device: str, dtype: str | None):
    """The checkpoint's model with a compact puzzle table holding only `rows` (local row i = global rows[i])."""
    from arc_kit.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(model_dir, puzzle_rows=rows, device=device, forward_dtype=dtype)
    model.eval()
    return model, info


def predict(model_dir: str | Path, task_set: TaskSet, out_dir: str | Path, cfg: PredictConfig) -> dict:
    """Run every test input of `task_set` under the checkpoint's augmented puzzles; append to OUT/predictions.jsonl.

    Returns a summary dict (views planned, run, skipped as done, predictions written, seconds, views/s).
    """

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_writable_dir(out_dir, "--out")
    if cfg.views is not None and cfg.views < 1:
        raise ArcKitError(f"--views must be at least 1, got {cfg.views}")
    if cfg.batch_size < 1:
        raise ArcKitError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    info = verify_checkpoint(model_dir)  # config + row names; headers, sizes and shapes checked, no tensors
    names = info.puzzle_names
    tasks = task_set.tasks
    if task_set.invalid:
        print(
            f"predict: {len(task_set.invalid)} invalid task(s) skipped (the vote's fallback covers them)",
            file=sys.stderr,
        )
    if rows_unnamed(names):  # never guess which row is which task
        raise unnamed_rows_error(model_dir, len(names), "predict")
    per_task = task_puzzles(names, tasks)  # task -> [(row, name)], identity first
    unknown = [t for t in tasks if t not in per_task]
    if unknown:
        if len(unknown) == len(tasks):
            raise ArcKitError(
                f"{model_dir / 'puzzles.json'}: none of the {len(tasks)} selected tasks is in the "
                f"checkpoint's puzzle table (wrong --tasks for this checkpoint?)"
            )
        print(
            f"predict: warning: {len(unknown)} of {len(tasks)} tasks are not in the checkpoint's puzzle table; "
            f"they run once, untransformed, on the blank puzzle row 0 (e.g. {', '.join(unknown[:5])})",
            file=sys.stderr,
        )
    chosen = {t: subsample(per_task.get(t, [(0, t)]), cfg.views) for t in tasks}

    rows, local_row, global_row = compact_table(chosen)

    device = resolve_device(cfg.device)
    dtype = cfg.dtype
    if dtype is None and str(device).startswith("cpu") and info.config.forward_dtype != "float32":
        dtype = "float32"  # bfloat16 matmuls are slow on most CPUs
    settings = {
        "model": fingerprint(model_dir),
        "model_dir": str(model_dir.resolve()),
        "early_halt": cfg.early_halt,
        "all_steps": cfg.all_steps,
        "config": asdict(cfg),
    }
    _check_run_file(out_dir, settings)
    done = done_view_keys(out_dir)

    model, _ = load_model(model_dir, rows, device, dtype)
    if cfg.compile:
        model.compile_inference()
    canvas = int(round(model.config.seq_len**0.5))
    if canvas * canvas != model.config.seq_len:
        raise ArcKitError(f"{model_dir}: seq_len {model.config.seq_len} is not a square canvas")
    too_big = [t for t, task in tasks.items() if not task_fits(task, canvas)]
    if too_big:
        print(
            f"predict: warning: {len(too_big)} task(s) have a grid larger than the model's {canvas}x{canvas} "
            f"canvas and are skipped (e.g. {', '.join(too_big[:5])})",
            file=sys.stderr,
        )
        tasks = {t: task for t, task in tasks.items() if t not in too_big}
    names_by_task = {t: [n for _, n in lst] for t, lst in chosen.items()}
    crops = {t: task_crop(task, model.config.crop_margin) for t, task in tasks.items()} if model.config.crops else None
    todo = plan_views(tasks, names_by_task, local_row, {t: canvas for t in tasks}, cfg.views or 10**9, done, crops)
    total = sum(len(task.test) * len(chosen[t]) for t, task in tasks.items())
    print(
        f"predict: {len(tasks)} tasks, {total:,} views ({total - len(todo):,} already in {out_dir / PREDICTIONS}), "
        f"{len(rows) - 1:,} puzzle rows loaded, device {device}, batch {cfg.batch_size}, "
        f"{model.config.forward_dtype}, {model.config.halt_max_steps} steps"
        f"{' (early halt)' if cfg.early_halt else ''}",
        file=sys.stderr,
    )

    # the folder and its settings file appear only once the model is loaded: a failed start leaves nothing
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RUN_FILE, settings, indent=1)
    stats = run_inference(
        model,
        todo,
        tasks,
        out_dir / PREDICTIONS,
        InferOptions(
            batch_size=cfg.batch_size,
            device=device,
            show_progress=cfg.progress,
            empty_path=out_dir / EMPTY,
            early_halt=cfg.early_halt,
            all_steps=cfg.all_steps,
            progress_desc="predict",
            annotate=lambda p: p.extra.__setitem__("row", global_row.get(p.augmentation, 0)),
        ),
    )
    written, empty, ran, steps = stats.written, stats.empty, stats.written + stats.empty, stats.steps
    if cfg.all_steps:  # one prediction per step: count views, not lines
        ran = len(todo) - stats.skipped_time
    seconds = stats.seconds
    summary = {
        "tasks": len(tasks),
        "too_big": len(too_big),
        "unknown_tasks": len(unknown),
        "views": total,
        "skipped_done": total - len(todo),
        "ran": ran,
        "written": written,
        "empty": empty,
        "rows_loaded": len(rows) - 1,
        "mean_steps": round(steps / ran, 3) if ran else 0.0,
        "seconds": round(seconds, 2),
        "views_per_s": round(ran / seconds, 2) if seconds > 0 else 0.0,
        "out": str(out_dir / PREDICTIONS),
    }
    print(
        f"predict: {ran:,} views in {seconds:.1f}s ({summary['views_per_s']} views/s, {summary['mean_steps']} "
        f"steps per view), {written:,} predictions written{f', {empty} decoded empty' if empty else ''} "
        f"-> {out_dir / PREDICTIONS}",
        file=sys.stderr,
    )
    return summary
