"""The inference stage (a child process): augmented inference with the test-time-trained model or a checkpoint."""

import math
from pathlib import Path

from arc_kit.augment import sample_augmentations
from arc_kit.consistency import (
    CONSISTENCY_FILE,
    candidates_by_input,
    consistency_wanted,
    read_consistency,
    score_views,
    scored_keys,
)
from arc_kit.crops import task_crop
from arc_kit.data import Task, task_fits
from arc_kit.identifiers import task_puzzles
from arc_kit.infer import InferOptions, plan_views, run_inference
from arc_kit.predictions import PREDICTIONS_FILE, done_view_keys, empty_views_file, read_predictions
from arc_kit.run.directory import PLAN_FILE, TTT_DIR
from arc_kit.run.faults import inject_fault
from arc_kit.run.hardware import hardware, setup_torch
from arc_kit.run.plan import read_plan
from arc_kit.run.snapshots import snapshot_sources

# ---------------------------------------------------------------- inference


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


def _load_model(src: Path, cfg, task_set, n_views: int, device):
    """A model directory's model, ready for inference (the run's supervision steps), with its views' rows."""
    from arc_kit.model.build import fit_config
    from arc_kit.run.ttt_setup import run_canvas_for

    model, per_task, rows = load_for_views(src, task_set.tasks, n_views)
    # inference may run fewer (or more) steps than training did; a crop-trained model keeps its own crops, a
    # 30x30-canvas one runs on crops with model.canvas crop; coordinate positions run on the run's canvas, as in
    # training (a given checkpoint with ttt.enabled false too)
    halt = cfg.inference.steps if cfg.inference.steps is not None else cfg.model.halt_max_steps
    crop_margin = cfg.model.canvas_margin if cfg.model.canvas == "crop" else None
    side = run_canvas_for(model, cfg, list(task_set.tasks.values()))
    model.config = fit_config(model.config, seq_len=side * side, crop_margin=crop_margin, halt_max_steps=halt)
    if cfg.inference.compile != "off":
        model.compile_inference()
    return model.to(device).eval(), per_task, rows


def infer_stage(out: Path, cfg, task_set, until: float, log, accelerator=None) -> dict:
    """Augmented inference with the test-time-trained model (or the given checkpoint) into predictions.jsonl: every
    snapshot's views (inference.snapshots, the final model first), then consistency scores when wanted."""
    world = accelerator.num_processes if accelerator is not None else 1
    device, autocast, threads = setup_torch(cfg, world, accelerator)
    ck = out / TTT_DIR / "model"
    src = ck if (ck / "model.safetensors").is_file() else (Path(cfg.model.checkpoint) if cfg.model.checkpoint else None)
    if src is None:
        return {"status": "skipped", "message": "no model: training produced no checkpoint and no --checkpoint given"}
    plan = read_plan(out / PLAN_FILE)
    if plan is not None and plan.threads and cfg.runtime.threads == 0 and device.type == "cpu" and world == 1:
        import torch

        threads = plan.threads  # the training stage measured which thread count runs fastest here
        torch.set_num_threads(threads)
    n_views = min(plan.infer_views, cfg.inference.views) if plan is not None else cfg.inference.views
    sources = snapshot_sources(out, cfg.inference.snapshots, src, log)
    totals = dict.fromkeys(("already_done", "planned", "written", "empty", "skipped_cap", "skipped_time"), 0)
    seconds, steps_sum, capped, per_snapshot = 0.0, 0, set(), {}
    views_of: dict[float, list] = {}
    for frac, model_dir in sources:
        model, per_task, rows = _load_model(model_dir, cfg, task_set, n_views, device)
        canvas = math.isqrt(model.config.seq_len)
        tasks = {tid: t for tid, t in task_set.tasks.items() if task_fits(t, canvas)}
        if len(tasks) < len(task_set.tasks) and frac == sources[0][0]:
            log.info(
                f"infer: {len(task_set.tasks) - len(tasks)} task(s) do not fit the {canvas}x{canvas} canvas: "
                "fallback only"
            )
        blank = 0
        for tid, task in tasks.items():
            if tid not in per_task:
                per_task[tid] = [a.name(tid) for a in sample_augmentations(task, n_views - 1, cfg.runtime.seed + 1)]
                blank += 1
        if blank and frac == sources[0][0]:
            log.info(f"infer: {blank} task(s) have no trained puzzle row in {src}: their views use row 0 (<blank>)")
        done = done_view_keys(out, frac)
        crops = (
            {tid: task_crop(t, model.config.crop_margin) for tid, t in tasks.items()} if model.config.crops else None
        )
        all_views = plan_views(tasks, per_task, rows, {tid: canvas for tid in tasks}, n_views, None, crops)
        views = [v for v in all_views if v.key not in done]
        tag = "" if len(sources) == 1 else f" snapshot {frac:g}:"
        log.info(
            f"infer:{tag} {len(views)} views to run ({n_views} per test input, {len(done)} already done) "
            f"with {model_dir} on {device}"
        )
        stats = run_inference(
            model,
            views,
            tasks,
            out / PREDICTIONS_FILE,
            InferOptions(
                batch_size=cfg.inference.batch_size,
                device=device,
                autocast=autocast,
                deadline=until,
                task_time_cap=cfg.inference.task_time_cap_seconds,
                accelerator=accelerator if world > 1 else None,
                show_progress=cfg.output.progress,
                extra=None if frac == 1.0 else {"snapshot": frac},  # no field: the final model (as before snapshots)
                log=log.info,
                fault=inject_fault,
                empty_path=out / empty_views_file(frac),
                early_halt=cfg.inference.early_halt,
            ),
        )
        log.info(f"infer:{tag} {stats.summary()}")
        for k in totals:
            totals[k] += len(done) if k == "already_done" else getattr(stats, k)
        seconds, steps_sum = seconds + stats.seconds, steps_sum + stats.steps
        capped.update(stats.capped_tasks)
        per_snapshot[f"{frac:g}"] = {"model": str(model_dir), "written": stats.written, "planned": stats.planned}
        views_of[frac] = all_views
        out_of_time = bool(stats.skipped_time)  # counted on the main process only: every process follows it
        if world > 1:
            from accelerate.utils import broadcast_object_list

            out_of_time = bool(broadcast_object_list([out_of_time])[0])
        if out_of_time:  # the deadline came: the next run_inference would still start one batch
            log.info("infer: deadline reached: later snapshots and the consistency pass are not run")
            break
    ran = totals["written"] + totals["empty"]
    result = {
        "status": "done",
        "hardware": hardware(device, threads),
        "model": str(src),
        "views_per_input": n_views,
        "puzzle_rows_loaded": max(0, len(rows) - 1),
        **totals,
        "seconds": seconds,
        "views_per_s": ran / seconds if seconds > 0 else 0.0,
        "steps": model.config.halt_max_steps,
        "early_halt": cfg.inference.early_halt,
        "mean_steps": round(steps_sum / ran, 3) if ran and world == 1 else None,
        "capped_tasks": sorted(capped),
        "snapshots": per_snapshot,
    }
    if consistency_wanted(cfg) and not totals["skipped_time"] and (accelerator is None or accelerator.is_main_process):
        result["consistency"] = consistency_pass(
            out, cfg, task_set, sources, views_of, n_views, until, log, device, autocast
        )
    return result


def consistency_pass(
    out: Path, cfg, task_set, sources, views_of, n_views: int, until: float, log, device, autocast
) -> dict:
    """Score every candidate (any snapshot's) under every view that ran, per snapshot, into consistency.jsonl;
    what is stored already is skipped. Main process only (data parallel: the other processes are done)."""
    pred = out / PREDICTIONS_FILE
    candidates = candidates_by_input(read_predictions(pred)) if pred.is_file() else {}
    path = out / CONSISTENCY_FILE
    done = scored_keys(read_consistency(path)) if path.is_file() else set()
    totals = {"views": 0, "scores": 0, "views_left": 0, "seconds": 0.0}
    for frac, model_dir in sources:
        ran = done_view_keys(out, frac)  # views that ran (answer or empty): their logits score candidates too
        views = [v for v in views_of.get(frac, []) if v.key in ran]
        model = _load_model(model_dir, cfg, task_set, n_views, device)[0]
        tasks = {tid: task_set.tasks[tid] for tid in {v.task_id for v in views}}
        stats = score_views(
            model,
            views,
            tasks,
            candidates,
            path,
            snapshot=frac,
            done=done,
            batch_size=cfg.inference.batch_size,
            device=device,
            autocast=autocast,
            early_halt=cfg.inference.early_halt,
            deadline=until,
            log=log.info,
        )
        for k in totals:
            totals[k] += stats[k]
    log.info(
        f"consistency: {totals['scores']} scores of {totals['views']} views in {totals['seconds']:.1f}s "
        f"({len(done)} stored before)"
    )
    return dict(totals, stored_before=len(done))
