"""The inference stage (a child process): augmented inference with the test-time-trained model or a checkpoint."""

import math
from pathlib import Path

from arc_kit.augment import sample_augmentations
from arc_kit.crops import crop_config, task_crop
from arc_kit.data import Task, task_fits
from arc_kit.files import read_json
from arc_kit.identifiers import task_puzzles
from arc_kit.infer import plan_views, run_inference
from arc_kit.predictions import EMPTY_VIEWS_FILE, PREDICTIONS_FILE, done_view_keys
from arc_kit.run.directory import PLAN_FILE, TTT_DIR
from arc_kit.run.faults import inject_fault
from arc_kit.run.hardware import hardware, setup_torch


def load_for_views(src: Path, tasks: dict[str, Task], n_views: int, device="cpu"):
    """The model of checkpoint `src` with only the puzzle rows that `n_views` views per task use.

    Returns (model, names per task: the task's puzzles identity first then table order, at most n_views,
    rows: puzzle name -> row of the loaded compact table). A test-time-trained model's table holds exactly the
    puzzles that run trained, in the order they were sampled; a published table holds ~1M rows, of which only
    the selected tasks' are read (memory-mapped)."""
    from arc_kit.model.checkpoint import load_checkpoint, read_checkpoint_info

    names = read_checkpoint_info(src).puzzle_names
    per_task = {tid: puzzles[:n_views] for tid, puzzles in task_puzzles(names, tasks).items()}
    keep = sorted({0} | {row for puzzles in per_task.values() for row, _ in puzzles}) if names else None
    model, _ = load_checkpoint(src, device=device, puzzle_rows=keep)
    rows = {names[r]: i for i, r in enumerate(keep)} if keep else {}
    return model, {tid: [n for _, n in puzzles] for tid, puzzles in per_task.items()}, rows


def infer_stage(out: Path, cfg, task_set, until: float, log, accelerator=None) -> dict:
    """Augmented inference with the test-time-trained model (or the given checkpoint) into predictions.jsonl."""
    world = accelerator.num_processes if accelerator is not None else 1
    device, autocast, threads = setup_torch(cfg, world, accelerator)
    ck = out / TTT_DIR / "model"
    src = ck if (ck / "model.safetensors").is_file() else (Path(cfg.model.checkpoint) if cfg.model.checkpoint else None)
    if src is None:
        return {"status": "skipped", "message": "no model: training produced no checkpoint and no --checkpoint given"}
    plan = read_json(out / PLAN_FILE, "plan") if (out / PLAN_FILE).is_file() else {}
    if plan.get("threads") and cfg.runtime.threads == 0 and device.type == "cpu" and world == 1:
        import torch

        threads = int(plan["threads"])  # the training stage measured which thread count runs fastest here
        torch.set_num_threads(threads)
    n_views = min(int(plan.get("infer_views", cfg.inference.views)), cfg.inference.views)
    model, per_task, rows = load_for_views(src, task_set.tasks, n_views)
    if cfg.model.halt_max_steps is not None:
        model.config.halt_max_steps = cfg.model.halt_max_steps
    if cfg.inference.steps is not None:  # inference may run fewer (or more) steps than training did
        model.config.halt_max_steps = cfg.inference.steps
    if cfg.model.canvas == "crop":  # a crop-trained model keeps its own crops; a 30x30-canvas one runs on crops
        model.config = crop_config(model.config, cfg.model.canvas_margin)
    model.to(device).eval()
    canvas = math.isqrt(model.config.seq_len)
    tasks = {tid: t for tid, t in task_set.tasks.items() if task_fits(t, canvas)}
    if len(tasks) < len(task_set.tasks):
        log.info(
            f"infer: {len(task_set.tasks) - len(tasks)} task(s) do not fit the {canvas}x{canvas} canvas: fallback only"
        )
    blank = 0
    for tid, task in tasks.items():
        if tid not in per_task:
            per_task[tid] = [a.name(tid) for a in sample_augmentations(task, n_views - 1, cfg.inference.seed)]
            blank += 1
    if blank:
        log.info(f"infer: {blank} task(s) have no trained puzzle row in {src}: their views use row 0 (<blank>)")
    done = done_view_keys(out)
    crops = {tid: task_crop(t, model.config.crop_margin) for tid, t in tasks.items()} if model.config.crops else None
    views = plan_views(tasks, per_task, rows, {tid: canvas for tid in tasks}, n_views, done, crops)
    log.info(
        f"infer: {len(views)} views to run ({n_views} per test input, {len(done)} already done) with {src} on {device}"
    )
    stats = run_inference(
        model,
        views,
        tasks,
        out / PREDICTIONS_FILE,
        batch_size=cfg.inference.batch_size,
        device=device,
        autocast=autocast,
        deadline=until,
        task_time_cap=cfg.inference.task_time_cap_seconds,
        accelerator=accelerator if world > 1 else None,
        show_progress=cfg.output.progress,
        log=log.info,
        fault=inject_fault,
        empty_path=out / EMPTY_VIEWS_FILE,
        early_halt=cfg.inference.early_halt,
    )
    ran = stats.written + stats.empty
    log.info(f"infer: {stats.summary()}")
    return {
        "status": "done",
        "hardware": hardware(device, threads),
        "model": str(src),
        "views_per_input": n_views,
        "puzzle_rows_loaded": max(0, len(rows) - 1),
        "already_done": len(done),
        "planned": stats.planned,
        "written": stats.written,
        "empty": stats.empty,
        "skipped_cap": stats.skipped_cap,
        "skipped_time": stats.skipped_time,
        "seconds": stats.seconds,
        "views_per_s": stats.seq_per_s,
        "steps": model.config.halt_max_steps,
        "early_halt": cfg.inference.early_halt,
        "mean_steps": round(stats.steps / ran, 3) if ran and world == 1 else None,
        "capped_tasks": stats.capped_tasks,
    }
