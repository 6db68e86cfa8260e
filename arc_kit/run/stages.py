"""Run stages in child processes: test-time training on the target tasks' demonstrations, then augmented inference."""

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

from arc_kit.run.budget import fault_requested, free_cores, inject_fault, measure_train_rate, plan_run, watch_parent
from arc_kit.data import Pair, Task, TaskSet, task_fits, visible_side
from arc_kit.files import atomic_write_json, read_json
from arc_kit.run.config import RunConfig, run_config_from_dict

# Files of a run directory (`--out`).
CONFIG_FILE = "config.yaml"        # the resolved RunConfig of this run
TASKS_FILE = "tasks.json"          # the selected tasks, exactly as the stages see them
MANIFEST_FILE = "run.json"         # hashes that decide whether a rerun may resume
STATE_FILE = "state.json"          # per-stage status (parent writes)
PLAN_FILE = "plan.json"            # time split and trimmed counts (training stage writes)
PREDICTIONS_FILE = "predictions.jsonl"
SUBMISSION_FILE = "submission.json"
SCORE_FILE = "score.json"
REPORT_FILE = "report.md"
LOG_FILE = "run.log"
TTT_DIR = "ttt"                    # ttt/model: the test-time-trained checkpoint (+ training state)



# ---------------------------------------------------------------- shared helpers

def save_tasks(path: Path, task_set: TaskSet) -> None:
    """The stages' task file: the selected tasks' demonstrations and test inputs. Test outputs are never written:
    they exist for scoring only, in the parent process."""
    def pair(p: Pair) -> dict:
        return {"input": p.input, "output": p.output}
    blind = task_set.without_solutions()
    atomic_write_json(path, {
        "source": blind.source, "invalid": blind.invalid, "problems": blind.problems,
        "tasks": {tid: {"train": [pair(p) for p in t.train], "test": [{"input": p.input} for p in t.test],
                        "source": t.source, "version": t.version} for tid, t in blind.tasks.items()}})


def load_saved_tasks(path: Path) -> TaskSet:
    obj = read_json(path, "run tasks file")
    tasks = {tid: Task(tid, [Pair(p["input"], p["output"]) for p in t["train"]],
                       [Pair(p["input"]) for p in t["test"]], t.get("source", ""), t.get("version", ""))
             for tid, t in obj["tasks"].items()}
    return TaskSet(tasks=tasks, problems=obj.get("problems", []), source=obj.get("source", ""),
                   invalid={k: int(v) for k, v in obj.get("invalid", {}).items()})


def setup_logging(out: Path, tag: str) -> logging.Logger:
    """Logger `arc_kit.run`: short lines on stderr, timestamped lines appended to OUT/run.log (all processes)."""
    log = logging.getLogger("arc_kit.run")
    if getattr(log, "_arc_kit_out", None) == (str(out), tag):
        return log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.setLevel(logging.INFO)
    log.propagate = False
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter(f"[{tag}] %(message)s"))
    log.addHandler(err)
    out.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out / LOG_FILE, encoding="utf-8")
    fh.setFormatter(logging.Formatter(f"%(asctime)s [{tag} pid %(process)d] %(message)s"))
    log.addHandler(fh)
    log._arc_kit_out = (str(out), tag)
    return log


def run_canvas(cfg: RunConfig, tasks: list[Task]) -> int:
    """The canvas side of a model trained by this run: fixed, or the smallest that fits every selected task's
    visible grids plus the EOS border and `model.canvas_margin` (answer-blind: test outputs never count)."""
    if cfg.model.canvas == "task":
        side = max((visible_side(t) for t in tasks), default=1)
        return min(30, side + 1 + cfg.model.canvas_margin)
    return int(cfg.model.canvas)


def setup_torch(cfg: RunConfig, world: int, accelerator=None):
    """Threads, device and autocast dtype of this process. The one precision rule, for training and inference:
    bfloat16 autocast on a CUDA device that supports it, float32 everywhere else."""
    import torch
    threads = cfg.runtime.threads or max(1, free_cores() // max(1, world))
    torch.set_num_threads(threads)
    if accelerator is not None:
        device = accelerator.device
    elif cfg.runtime.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.runtime.device)
    autocast = None
    if (device.type == "cuda" and cfg.runtime.precision == "bfloat16"
            and torch.cuda.is_bf16_supported(including_emulation=False)):
        autocast = torch.bfloat16
    return device, autocast, threads


def hardware(device, threads: int) -> dict:
    import platform

    import torch
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_cores": os.cpu_count(), "cores_free": free_cores(), "threads": threads, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpus"] = torch.cuda.device_count()
    return info


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


# ---------------------------------------------------------------- child entry point

def main(argv: list[str] | None = None) -> int:
    """`python -m arc_kit.run.stages {train,infer} OUT --until T [--train-until T] [--resume]` (run by the pipeline)."""
    ap = argparse.ArgumentParser(prog="arc_kit.run.stages")
    ap.add_argument("stage", choices=("train", "infer"))
    ap.add_argument("out")
    ap.add_argument("--until", type=float, required=True, help="epoch seconds: the stage's soft deadline")
    ap.add_argument("--train-until", type=float, default=None)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    watch_parent()
    out = Path(args.out)
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import Accelerator
        accelerator = Accelerator()
    is_main = accelerator is None or accelerator.is_main_process
    rank = accelerator.process_index if accelerator is not None else 0
    log = setup_logging(out, args.stage if rank == 0 else f"{args.stage}:{rank}")
    if not is_main:
        log.handlers[0].setLevel(logging.WARNING)  # one voice on stderr; every process still logs to the file
    result_path = out / f"stage_{args.stage}.json"
    try:
        import yaml
        cfg = run_config_from_dict(yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8")))
        task_set = load_saved_tasks(out / TASKS_FILE)
        if args.stage == "train":
            result = train_stage(out, cfg, task_set, args.until, args.train_until or args.until, args.resume, log,
                                 accelerator)
        else:
            inject_fault("infer_start")
            from arc_kit.infer import infer_stage
            result = infer_stage(out, cfg, task_set, args.until, log, accelerator)
        code = 0 if result.get("status") in ("done", "skipped") else 1
    except Exception as e:
        import traceback
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        log.error(f"{args.stage}: failed: {msg}")
        with open(out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        result, code = {"status": "failed", "message": msg}, 1
    if is_main:
        atomic_write_json(result_path, result, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main())
