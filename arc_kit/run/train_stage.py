"""The training stage (a child process): test-time training on the demonstrations, planned from measured speed."""

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from arc_kit.base.files import atomic_write_json, read_json
from arc_kit.data import Task, TaskSet, load_tasks, task_fits
from arc_kit.infer import measure_infer_rate
from arc_kit.model.train import measure_train_rate
from arc_kit.run.config import RunConfig
from arc_kit.run.directory import PLAN_FILE, TTT_DIR
from arc_kit.run.faults import fault_requested, inject_fault
from arc_kit.run.hardware import ThreadRetuner, choose_threads, hardware, setup_torch, usable_cores
from arc_kit.run.plan import Plan, plan_run, read_plan
from arc_kit.run.snapshots import SnapshotSaver, infer_passes
from arc_kit.run.ttt_setup import StageEnv, build_training, probe_model, probe_side

if TYPE_CHECKING:
    pass


def _state_matches(path: Path, frozen: bool) -> bool:
    """Whether a saved training state can resume a phase with this freezing (its optimisers must match)."""
    from safetensors import safe_open

    from arc_kit.model.checkpoint import finish_interrupted_save

    finish_interrupted_save(path.parent)  # a run killed while saving: complete the save first
    if not path.is_file():
        return False
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    has_net = any(k.startswith("optim.net") for k in keys)
    return "step" in keys and has_net == (not frozen)


def plan_training(
    env: StageEnv,
    model,
    canvas: int,
    targets: list[Task],
    extras: list[Task],
    until: float,
    train_until: float,
    resume: bool,
) -> Plan:
    """Measure training and inference speed on this hardware and split the time left (or reuse the plan of the
    interrupted run)."""
    cfg = env.cfg
    plan_path = env.out / PLAN_FILE
    saved = read_plan(plan_path) if resume else None
    if saved is not None:
        # the saved deadline belongs to the interrupted invocation: keep the same inference time this time
        saved.train_until = min(train_until, until - saved.infer_seconds)
        env.log.info(
            f"train: resuming; plan from {plan_path.name}: {saved.train_steps} steps, "
            f"{saved.ttt_augmentations} augmentations"
        )
        return saved
    # Small probe batches: they cost seconds on a CPU, and per sequence they are a little slower than full
    # batches, so the plan errs on the safe side.
    batch = cfg.ttt.train.global_batch_size
    probe = 64 if env.device.type == "cpu" else 256

    def train_probe() -> float:
        return measure_train_rate(model, canvas, min(batch // env.world, probe), env.device, env.autocast, repeats=1)

    thread_rates: dict[int, float] = {}
    cores = usable_cores() // env.world
    if env.device.type == "cpu" and cfg.runtime.threads == 0 and cores > 1:
        # threads by measurement, not by the lagging load average: 1 thread against every usable core
        env.threads, thread_rates = choose_threads(train_probe, sorted({1, env.threads, cores}))
        train_rate = thread_rates[env.threads]
    else:
        train_rate = train_probe()
    train_halt = model.config.halt_max_steps
    if cfg.inference.steps is not None:  # inference runs its own number of supervision steps: time those
        model.config.halt_max_steps = cfg.inference.steps
    try:
        infer_rate = measure_infer_rate(
            model, canvas, min(cfg.inference.batch_size, probe), env.device, autocast=env.autocast
        )
    finally:
        model.config.halt_max_steps = train_halt
    p = plan_run(
        until - time.time(),
        n_test_inputs=sum(len(t.test) for t in targets),
        infer_views=cfg.inference.views,
        infer_seq_per_s=infer_rate * env.world,
        train_seq_per_s=train_rate * env.world,
        batch_size=batch,
        max_steps=cfg.ttt.max_steps,
        n_demo_pairs=sum(len(t.train) for t in targets + extras),
        ttt_augmentations=cfg.ttt.augmentations,
        train_share=cfg.budget.train_share,
        min_infer_share=cfg.budget.min_infer_share,
        min_epochs=cfg.ttt.min_epochs,
        startup_seconds=cfg.budget.startup_seconds,
        infer_passes=infer_passes(cfg),
    )
    plan = dataclasses.replace(
        p,
        created=time.time(),
        canvas=canvas,  # the side the probe measured (with crops: of the mean bucket length)
        crops=bool(getattr(model.config, "crops", False)),
        train_seq_per_s=train_rate * env.world,
        infer_seq_per_s=infer_rate * env.world,
        train_steps=max(1, p.train_steps),
        train_until=min(train_until, time.time() + p.train_seconds),
        threads=env.threads,
        thread_rates={str(n): r * env.world for n, r in thread_rates.items()},
    )
    if env.accelerator is not None and env.world > 1:
        from accelerate.utils import broadcast_object_list

        plan = broadcast_object_list([plan])[0]
    if env.is_main:
        atomic_write_json(plan_path, plan.to_json(), indent=1)
    env.log.info(
        f"train: measured {plan.train_seq_per_s:.1f} train / {plan.infer_seq_per_s:.1f} infer seq/s "
        f"on a {canvas}x{canvas} {'square (mean crop bucket)' if plan.crops else 'canvas'}; "
        f"plan: {plan.train_steps} steps in "
        f"~{plan.expected_train_seconds:.0f}s (at most {plan.train_seconds:.0f}s), "
        f"{plan.ttt_augmentations} augmentations/task, {plan.infer_views} views/test input"
    )
    for note in plan.notes:
        env.log.info(f"train: plan: {note}")
    return plan


# ---------------------------------------------------------------- phase 3: train


def train_phases(env: StageEnv, model, data, plan: Plan, train_until: float, resume: bool) -> dict:
    """Phase 1 (optional): puzzle embeddings only, network frozen; phase 2: as configured. The deadline ends
    training (ttt.max_steps > 0 caps the steps too): when the hardware turns out faster than the probe said,
    training simply goes on (the planned count only sets the learning-rate schedule, re-planned as it goes)."""
    import torch

    from arc_kit.model.checkpoint import STATE_FILES
    from arc_kit.model.train import NonFiniteLoss, Trainer

    cfg, ttt, log, ck = env.cfg, env.cfg.ttt, env.log, env.checkpoint_dir
    train_cfg = dataclasses.replace(
        ttt.train,
        progress=cfg.output.progress,
        seed=cfg.runtime.seed,
        device=cfg.runtime.device,
        precision="auto" if cfg.runtime.precision == "bfloat16" else "float32",
    )
    planned, cap = max(1, plan.train_steps), ttt.max_steps  # cap 0: none
    rate_steps = plan.train_seq_per_s / train_cfg.global_batch_size
    train_cfg.checkpoint_every = max(10, int(rate_steps * 60 * ttt.checkpoint_minutes))
    t_until = min(plan.train_until, train_until)
    phases: list[tuple[str, int | None, bool]] = []  # (name, step cap or None: until the deadline, frozen)
    emb_steps = min(ttt.embeddings_only_steps, cap or ttt.embeddings_only_steps) if not ttt.freeze_network else 0
    if emb_steps:
        phases.append(("embeddings", emb_steps, True))
    if not cap or cap - emb_steps > 0:
        name = "full" if not ttt.freeze_network else "embeddings"
        phases.append((name, cap - emb_steps if cap else None, ttt.freeze_network))
    retuner = None
    if env.device.type == "cpu" and cfg.runtime.threads == 0 and env.world == 1 and usable_cores() > 1:
        retuner = ThreadRetuner(sorted({1, usable_cores()}), env.threads, log=log.info)
    phase_file = env.out / TTT_DIR / "phase.json"
    phase_state = read_json(phase_file, "phase file") if (resume and phase_file.is_file()) else {}
    done_phases = phase_state.get("done", [])
    t_start, total_done, last, focus = time.time(), 0, {}, None
    saver = SnapshotSaver(env.out, cfg.inference.snapshots, env.is_main, log)
    for i, (name, n_steps, frozen) in enumerate(phases):
        if i in done_phases:
            continue
        for prm in model.parameters():  # a frozen phase before leaves requires_grad off
            prm.requires_grad_(True)
        # the schedule's first length: the planned steps this phase has (re-planned before every step)
        left = planned - emb_steps if i else planned
        schedule = max(1, min(n_steps, left) if n_steps else left)
        pcfg = dataclasses.replace(train_cfg, freeze_network=frozen, max_steps=n_steps or 0)
        trainer = Trainer(
            model, data, pcfg, accelerator=env.accelerator, log_path=env.out / TTT_DIR / "metrics.jsonl", steps=schedule
        )
        if phase_state.get("current") == i and _state_matches(ck / STATE_FILES["optimizer"], frozen):
            trainer.load_state(ck)
            log.info(f"train: resumed phase '{name}' at step {trainer.step_count} from {ck}")
        if env.is_main:
            atomic_write_json(phase_file, {"done": list(range(i)), "current": i})
        if i < len(phases) - 1:  # the embeddings phase gets its share of the planned steps' time
            phase_until = time.time() + (t_until - time.time()) * min(1.0, (n_steps or planned) / planned)
        else:
            phase_until = t_until
        nan_at = 3 if fault_requested("train", "nan") else None
        last_phase = i == len(phases) - 1

        def on_step(trainer=trainer, nan_at=nan_at, until=phase_until, before=total_done, last_phase=last_phase):
            """Before every step: faults, thread re-checks, re-planning the schedule, snapshots."""
            inject_fault("train")
            if retuner is not None:
                retuner(trainer.step_seconds)
            if nan_at is not None and trainer.step_count >= nan_at:
                with torch.no_grad():
                    for prm in trainer.model.parameters():
                        prm.fill_(float("nan"))
            # Re-plan: the schedule's length follows the measured step time and the time left
            fit = trainer.steps_by(until)
            if fit is not None:
                cap = trainer.config.max_steps  # 0: none
                trainer.total_steps = max(trainer.step_count + 1, min(cap, fit) if cap else fit)
            saver(trainer, before + trainer.step_count, before + trainer.total_steps if last_phase else planned)

        log.info(
            f"train: phase '{name}' ({'embeddings only' if frozen else 'network + embeddings'}): "
            f"{f'{n_steps} steps' if n_steps else 'no step cap'}, "
            f"until {time.strftime('%H:%M:%S', time.localtime(phase_until))}"
        )
        try:
            limit = n_steps if n_steps else math.inf
            last = trainer.train(until=phase_until, on_step=on_step, checkpoint_dir=ck, max_steps=limit)
        except NonFiniteLoss as e:
            # The weights are poisoned: keep the last checkpoint saved before, never save these.
            log.info(f"train: {e}; the last saved checkpoint (if any) is kept")
            return {"status": "failed", "message": str(e), "steps": total_done + trainer.step_count}
        except BaseException as e:
            if trainer.step_count > 0 and not isinstance(e, KeyboardInterrupt):
                try:
                    trainer.save(ck)
                    log.info(f"train: saved the model at step {trainer.step_count} after the error")
                except Exception as save_error:  # the original error is what matters; say this one too
                    log.info(f"train: could not save after the error: {type(save_error).__name__}: {save_error}")
            raise
        total_done += trainer.step_count
        if trainer.focus is not None:  # ttt.train.focus: how many tasks the model reproduced at the end
            focus = {"reproduced": int((trainer.focus.rate >= 0.9).sum()), "tasks": len(trainer.focus.rate)}
            log.info(f"train: focus: {focus['reproduced']} of {focus['tasks']} tasks reproduced (exact rate >= 0.9)")
        if env.is_main:
            atomic_write_json(phase_file, {"done": list(range(i + 1))})
        model = trainer.model
    saver.finish()
    if total_done == 0 and not cfg.model.checkpoint and not resume:
        # An untrained model's answers are noise that would push the fallback attempts out of the submission.
        if env.is_main:
            shutil.rmtree(ck, ignore_errors=True)
        return {"status": "skipped", "message": "no training step fit in the time budget", "steps": 0}
    return {
        "status": "done",
        "steps": total_done,
        "seconds": time.time() - t_start,
        "loss": last.get("loss"),
        "exact_accuracy": last.get("exact_accuracy"),
        "stopped": last.get("stopped"),
        **({"focus": focus} if focus else {}),
        **({"thread_rechecks": retuner.changes, "threads": retuner.current} if retuner and retuner.changes else {}),
    }


def train_stage(
    out: Path,
    cfg: RunConfig,
    task_set: TaskSet,
    until: float,
    train_until: float,
    resume: bool,
    log: logging.Logger,
    accelerator=None,
) -> dict:
    """Test-time training: plan from measured speed, build the data and the model, train until the planned time."""
    import torch

    world = accelerator.num_processes if accelerator is not None else 1
    device, autocast, threads = setup_torch(cfg, world, accelerator)
    env = StageEnv(
        out, cfg, log, accelerator, world, accelerator is None or accelerator.is_main_process, device, autocast, threads
    )
    result: dict = {"hardware": hardware(device, threads)}
    targets = list(task_set.tasks.values())
    extras = [
        t
        for src in cfg.ttt.extra_sources
        for tid, t in load_tasks(src, lenient=True).tasks.items()
        if tid not in task_set.tasks
    ]
    probe, canvas = probe_model(env, targets)
    targets = [t for t in targets if task_fits(t, canvas)]
    # extra sources train on their test pairs too (they are not the tasks being solved): those must fit as well
    extras = [
        t
        for t in extras
        if task_fits(t, canvas)
        and all(p.output is None or (len(p.output) <= canvas and len(p.output[0]) <= canvas) for p in t.test)
    ]
    if not targets:
        return dict(result, status="skipped", message=f"no task fits the {canvas}x{canvas} canvas")
    crops = (bool(probe.config.crops), int(probe.config.crop_margin))
    plan = plan_training(env, probe, probe_side(probe, targets), targets, extras, until, train_until, resume)
    result["plan"] = plan.to_json()
    del probe
    if plan.threads and cfg.runtime.threads == 0 and device.type == "cpu":  # the measured choice (resumed too)
        env.threads = plan.threads
        torch.set_num_threads(env.threads)
        result["hardware"]["threads"] = env.threads
    model, data = build_training(env, plan, canvas, targets, extras, crops)
    outcome = train_phases(env, model, data, plan, train_until, resume)
    if outcome["status"] == "done":
        outcome.update(puzzles=len(data.puzzle_names) - 1, canvas="crop" if crops[0] else canvas)
    return dict(result, **outcome)
