"""The training stage (a child process): test-time training on the target tasks' demonstrations, planned from measured speed."""

import logging
import math
import time
from pathlib import Path

from arc_kit.data import Task, TaskSet, task_fits, visible_side
from arc_kit.files import atomic_write_json, read_json
from arc_kit.model.train import measure_train_rate
from arc_kit.run.config import RunConfig
from arc_kit.run.directory import PLAN_FILE, TTT_DIR
from arc_kit.run.faults import fault_requested, inject_fault
from arc_kit.run.hardware import hardware, setup_torch
from arc_kit.run.plan import plan_run


def run_canvas(cfg: RunConfig, tasks: list[Task]) -> int:
    """The canvas side of a model trained by this run: fixed, or the smallest that fits every selected task's
    visible grids plus the EOS border and `model.canvas_margin` (answer-blind: test outputs never count)."""
    if cfg.model.canvas == "task":
        side = max((visible_side(t) for t in tasks), default=1)
        return min(30, side + 1 + cfg.model.canvas_margin)
    return int(cfg.model.canvas)


def scratch_model(cfg: RunConfig, canvas: int, rows: int):
    import torch

    from arc_kit.config import from_dict
    from arc_kit.model.trm import TRM, TRMConfig
    arch = dict(cfg.model.arch)
    arch.update(seq_len=canvas * canvas, num_puzzle_identifiers=max(1, rows))
    torch.manual_seed(cfg.runtime.seed)  # every process (and a resumed run) builds the same initial weights
    return TRM(from_dict(TRMConfig, arch, prefix="model.arch."))


def checkpoint_model_for(cfg: RunConfig, names: list[str], log: logging.Logger):
    """The checkpoint's network with a puzzle table of exactly `names` (row 0 `<blank>`): a name the checkpoint
    already has starts from its stored row, a new one from the mean of the whole stored table (streamed)."""
    import torch

    from arc_kit.model.checkpoint import load_checkpoint, read_checkpoint_info, table_mean
    stored = read_checkpoint_info(cfg.model.checkpoint).puzzle_names
    row_of = {n: i for i, n in enumerate(stored)}
    rows = [row_of.get(n, 0) for n in names]
    model, _ = load_checkpoint(cfg.model.checkpoint, puzzle_rows=rows)
    new = [i for i, n in enumerate(names) if i > 0 and n not in row_of]
    if new and model.config.puzzle_emb_ndim > 0:
        mean = table_mean(cfg.model.checkpoint)
        with torch.no_grad():
            model.puzzle_emb.weights[torch.tensor(new)] = mean
    log.info(f"train: {len(names) - 1} puzzles to train: {len(names) - 1 - len(new)} start from the checkpoint's "
             f"rows, {len(new)} from the mean of its {len(stored)}-row table")
    if "halt_max_steps" in cfg.model.arch:
        model.config.halt_max_steps = int(cfg.model.arch["halt_max_steps"])
    return model


# ---------------------------------------------------------------- training stage

def _state_matches(path: Path, frozen: bool) -> bool:
    """Whether a saved training state can resume a phase with this freezing (its optimisers must match)."""
    if not path.is_file():
        return False
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    has_net = any(k.startswith("optim.net") for k in keys)
    return "step" in keys and has_net == (not frozen)


def train_stage(out: Path, cfg: RunConfig, task_set: TaskSet, until: float, train_until: float, resume: bool,
                log: logging.Logger, accelerator=None) -> dict:
    """Test-time training: one puzzle per augmented target task, trained until its planned share of time is spent."""
    import torch

    from arc_kit.augment import AugmentConfig
    from arc_kit.config import from_dict, load_config
    from arc_kit.model.dataset import TrainData
    from arc_kit.infer import measure_infer_rate
    from arc_kit.model.checkpoint import STATE_FILES
    from arc_kit.model.train import NonFiniteLoss, TrainConfig, Trainer
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = accelerator is None or accelerator.is_main_process
    device, autocast, threads = setup_torch(cfg, world, accelerator)
    ttt, ck = cfg.ttt, out / TTT_DIR / "model"
    result: dict = {"hardware": hardware(device, threads)}

    targets = list(task_set.tasks.values())
    extras: list[Task] = []
    for src in ttt.extra_sources:
        from arc_kit.data import load_tasks
        extra = load_tasks(src, lenient=True)
        extras += [t for tid, t in extra.tasks.items() if tid not in task_set.tasks]
    if cfg.model.checkpoint:
        # Only row 0 (<blank>) now, for the throughput probe; the rows this run trains are set up below.
        from arc_kit.model.checkpoint import load_checkpoint
        model, _ = load_checkpoint(cfg.model.checkpoint, puzzle_rows=[0])
        canvas = math.isqrt(model.config.seq_len)
        if "halt_max_steps" in cfg.model.arch:
            model.config.halt_max_steps = int(cfg.model.arch["halt_max_steps"])
    else:
        canvas = run_canvas(cfg, targets)
        model = scratch_model(cfg, canvas, 1)
    targets = [t for t in targets if task_fits(t, canvas)]
    # extra sources train on their test pairs too (they are not the tasks being solved): those must fit as well
    extras = [t for t in extras if task_fits(t, canvas) and all(
        p.output is None or (len(p.output) <= canvas and len(p.output[0]) <= canvas) for p in t.test)]
    if not targets:
        return dict(result, status="skipped", message=f"no task fits the {canvas}x{canvas} canvas")
    model.to(device)

    train_cfg = from_dict(TrainConfig, dict({"progress": cfg.output.progress, "seed": ttt.seed,
                                             "device": cfg.runtime.device,
                                             "precision": "auto" if cfg.runtime.precision != "float32" else "float32"},
                                            **ttt.train), prefix="ttt.train.")
    plan_path = out / PLAN_FILE
    if resume and plan_path.is_file():
        plan = read_json(plan_path, "plan")
        # the saved deadline belongs to the interrupted invocation: keep the same inference time this time
        plan["train_until"] = min(train_until, until - float(plan.get("infer_seconds", 0.0)))
        log.info(f"train: resuming; plan from {plan_path.name}: {plan['train_steps']} steps, "
                 f"{plan['ttt_augmentations']} augmentations")
    else:
        # Measure before planning: one training step and one inference batch on this hardware.
        # Small probe batches: they cost seconds on a CPU, and per sequence they are a little slower than
        # full batches, so the plan errs on the safe side.
        probe = 64 if device.type == "cpu" else 256
        train_rate = measure_train_rate(model, canvas, min(train_cfg.global_batch_size // world, probe), device,
                                        autocast, repeats=1)
        infer_rate = measure_infer_rate(model, canvas, min(cfg.inference.batch_size, probe), device, autocast=autocast)
        p = plan_run(until - time.time(), n_test_inputs=sum(len(t.test) for t in targets),
                     infer_views=cfg.inference.views, infer_seq_per_s=infer_rate * world,
                     train_seq_per_s=train_rate * world, batch_size=train_cfg.global_batch_size,
                     max_steps=ttt.max_steps, n_demo_pairs=sum(len(t.train) for t in targets + extras),
                     ttt_augmentations=ttt.augmentations, train_share=cfg.budget.train_share,
                     min_infer_share=cfg.budget.min_infer_share, min_epochs=ttt.min_epochs,
                     startup_seconds=cfg.budget.startup_seconds)
        plan = {"created": time.time(), "canvas": canvas, "train_seq_per_s": train_rate * world,
                "infer_seq_per_s": infer_rate * world, "train_seconds": p.train_seconds,
                "expected_train_seconds": p.expected_train_seconds,
                "infer_seconds": p.infer_seconds, "train_steps": max(1, p.train_steps),
                "ttt_augmentations": p.ttt_augmentations, "infer_views": p.infer_views,
                "train_until": min(train_until, time.time() + p.train_seconds), "notes": p.notes}
        if accelerator is not None and world > 1:
            from accelerate.utils import broadcast_object_list
            plan = broadcast_object_list([plan])[0]
        if is_main:
            atomic_write_json(plan_path, plan, indent=1)
        log.info(f"train: measured {plan['train_seq_per_s']:.1f} train / {plan['infer_seq_per_s']:.1f} infer seq/s "
                 f"on a {canvas}x{canvas} canvas; plan: {plan['train_steps']} steps in ~{plan['expected_train_seconds']:.0f}s "
                 f"(at most {plan['train_seconds']:.0f}s), "
                 f"{plan['ttt_augmentations']} augmentations/task, {plan['infer_views']} views/test input")
        for note in plan["notes"]:
            log.info(f"train: plan: {note}")
    result["plan"] = plan

    aug_cfg = load_config(AugmentConfig, ttt.augment, subdir="augmentation") if ttt.augment else AugmentConfig()
    n_aug = int(plan["ttt_augmentations"])
    data = TrainData.from_tasks(targets + extras, [n_aug] * len(targets) + [ttt.extra_augmentations] * len(extras),
                                aug_cfg, seed=ttt.seed, canvas=canvas, translate=ttt.translate,
                                use_test_pairs=[False] * len(targets) + [True] * len(extras))
    # The table holds exactly the puzzles trained in this run (identity first, then the sampled augmentations,
    # task by task): inference reads them from OUT/ttt/model. A checkpoint's other rows for these tasks were
    # trained with another network and are never loaded.
    if cfg.model.checkpoint:
        model = checkpoint_model_for(cfg, data.puzzle_names, log)
    else:
        model = scratch_model(cfg, canvas, len(data.puzzle_names))
    model.to(device)
    planned, max_steps = max(1, int(plan["train_steps"])), ttt.max_steps
    rate_steps = plan["train_seq_per_s"] / train_cfg.global_batch_size
    train_cfg.checkpoint_every = max(10, int(rate_steps * 60 * ttt.checkpoint_minutes))
    t_until = min(float(plan["train_until"]), train_until)

    # Phase 1 (optional): puzzle embeddings only, network frozen; phase 2: as configured. Steps are capped
    # by max_steps and stopped by the deadline: when the hardware turns out faster than the probe said,
    # training simply goes on (the planned count only sets the learning-rate schedule, re-planned below).
    phases = []
    emb_steps = min(ttt.embeddings_only_steps, max_steps) if not ttt.freeze_network else 0
    if emb_steps:
        phases.append(("embeddings", emb_steps, True))
    if max_steps - emb_steps > 0:
        phases.append(("full" if not ttt.freeze_network else "embeddings", max_steps - emb_steps, ttt.freeze_network))
    phase_file = out / TTT_DIR / "phase.json"
    phase_state = read_json(phase_file, "phase file") if (resume and phase_file.is_file()) else {}
    done_phases = phase_state.get("done", [])
    t_start, total_done, last = time.time(), 0, {}
    for i, (name, n_steps, frozen) in enumerate(phases):
        if i in done_phases:
            continue
        for prm in model.parameters():  # a frozen phase before leaves requires_grad off
            prm.requires_grad_(True)
        pcfg = from_dict(TrainConfig, dict(vars(train_cfg), freeze_network=frozen, max_steps=n_steps))
        trainer = Trainer(model, data, pcfg, accelerator=accelerator, log_path=out / TTT_DIR / "metrics.jsonl",
                          steps=n_steps)
        if phase_state.get("current") == i and _state_matches(ck / STATE_FILES["optimizer"], frozen):
            trainer.load_state(ck)
            log.info(f"train: resumed phase '{name}' at step {trainer.step_count} from {ck}")
        if is_main:
            atomic_write_json(phase_file, {"done": list(range(i)), "current": i})
        if i < len(phases) - 1:  # the embeddings phase gets its share of the planned steps' time
            phase_until = time.time() + (t_until - time.time()) * min(1.0, n_steps / planned)
        else:
            phase_until = t_until
        nan_at = 3 if fault_requested("train", "nan") else None

        def should_stop(trainer=trainer, nan_at=nan_at, until=phase_until):
            inject_fault("train")
            if nan_at is not None and trainer.step_count >= nan_at:
                with torch.no_grad():
                    for prm in trainer.model.parameters():
                        prm.fill_(float("nan"))
            # Re-plan: the schedule's length follows the measured step time and the time left
            fit = trainer.steps_by(until)
            if fit is not None:
                trainer.total_steps = max(trainer.step_count + 1, min(trainer.config.max_steps, fit))
            return False

        log.info(f"train: phase '{name}' ({'embeddings only' if frozen else 'network + embeddings'}): "
                 f"{n_steps} steps, until {time.strftime('%H:%M:%S', time.localtime(phase_until))}")
        try:
            last = trainer.train(until=phase_until, should_stop=should_stop, checkpoint_dir=ck)
        except NonFiniteLoss as e:
            # The weights are poisoned: keep the last checkpoint saved before, never save these.
            log.info(f"train: {e}; the last saved checkpoint (if any) is kept")
            return dict(result, status="failed", message=str(e), steps=total_done + trainer.step_count)
        except BaseException as e:
            if trainer.step_count > 0 and not isinstance(e, KeyboardInterrupt):
                try:
                    trainer.save(ck)
                    log.info(f"train: saved the model at step {trainer.step_count} after the error")
                except Exception:
                    pass
            raise
        total_done += trainer.step_count
        if is_main:
            atomic_write_json(phase_file, {"done": list(range(i + 1))})
        model = trainer.model
    seconds = time.time() - t_start
    if total_done == 0 and not cfg.model.checkpoint and not resume:
        # An untrained model's answers are noise that would push the fallback attempts out of the submission.
        import shutil
        if is_main:
            shutil.rmtree(ck, ignore_errors=True)
        return dict(result, status="skipped", message="no training step fit in the time budget", steps=0)
    return dict(result, status="done", steps=total_done, seconds=seconds, loss=last.get("loss"),
                exact_accuracy=last.get("exact_accuracy"), stopped=last.get("stopped"),
                puzzles=len(data.puzzle_names) - 1, canvas=canvas)
