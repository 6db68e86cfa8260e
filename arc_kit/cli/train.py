"""Command `train`: train (or fine-tune) a TRM on tasks with the kit's trainer, writing a resumable checkpoint."""

import dataclasses
import sys
import time
from pathlib import Path

from arc_kit.base.config import load_config, save_config, to_dict
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import check_writable_dir
from arc_kit.cli.common import add_config_args
from arc_kit.model.config import GRID_CELLS, PretrainConfig


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a TRM (pretraining recipe or your own) and write a checkpoint directory",
        description="Train a TRM with the kit's trainer. The config has model:, data: and train: sections "
        "(shipped: pretrain-arc-agi-1, pretrain-arc-agi-2); key=value overrides follow, e.g. "
        "train.lr=3e-4 data.canvas=12. Writes OUT (checkpoint: EMA weights, optimiser state), "
        "OUT/metrics.jsonl and OUT/train.yaml. Run under `accelerate launch -m arc_kit.cli train ...` "
        "(or torchrun) for data parallel training over several GPUs/processes.",
    )
    add_config_args(p, default="pretrain-arc-agi-1")
    p.add_argument(
        "--tasks",
        metavar="SOURCE",
        action="append",
        default=[],
        help="tasks to train on (demonstration pairs only); repeatable; added to data.demo_sources",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="start from this kit checkpoint (its architecture and puzzle rows; new puzzles get the mean embedding)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument(
        "--minutes", type=float, default=None, help="wall-clock budget in minutes (> 0); stops (and saves) before it"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_train)


def _check_args(args) -> None:
    """Option values and the output folder, checked before torch is imported or anything is read."""
    import math

    if args.minutes is not None and not (math.isfinite(args.minutes) and args.minutes > 0):
        raise ArcKitError(f"--minutes must be a finite number of minutes > 0, got {args.minutes}")
    if args.threads < 0:
        raise ArcKitError(f"--threads must be 0 (torch's choice) or more, got {args.threads}")
    check_writable_dir(args.out, "--out")
    if args.resume and args.checkpoint:
        raise ArcKitError("--resume continues the run in --out; drop --checkpoint")


def cmd_train(args) -> int:
    import math
    import os

    _check_args(args)
    import torch

    from arc_kit.model.build import build_model, fit_config
    from arc_kit.model.checkpoint import load_model, read_checkpoint_info
    from arc_kit.model.dataset import load_train_data
    from arc_kit.model.starter import resolve_checkpoint
    from arc_kit.model.train import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    cfg.data.demo_sources = list(cfg.data.demo_sources) + list(args.tasks)
    out = Path(args.out)
    if (out / "config.yaml").exists() and not args.resume:
        raise ArcKitError(f"{out}: already holds a checkpoint (use --resume to continue it, or another --out)")

    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by accelerate launch / torchrun
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=cfg.train.device == "cpu")
    is_main = accelerator is None or accelerator.is_main_process

    t0 = time.time()
    base = str(resolve_checkpoint(args.checkpoint)) if args.checkpoint else (str(out) if args.resume else None)
    names: list[str] | None = None
    if base:  # the checkpoint fixes the first puzzle rows, and the canvas unless its positions are coordinates
        info = read_checkpoint_info(base)
        names, ck = info.puzzle_names, info.config
        if ck.crops and (not cfg.data.crops or cfg.data.canvas_margin != ck.crop_margin):
            raise ArcKitError(
                f"config key 'data.canvas': {base} was trained on crops with crop_margin {ck.crop_margin}; "
                f"continue it with data.canvas=crop data.canvas_margin={ck.crop_margin}"
            )
        if cfg.data.crops:
            fit_config(ck, crop_margin=cfg.data.canvas_margin, crop_key="data.canvas")  # refused before reading tasks
        elif ck.positions != "coords":
            cfg.data.canvas = math.isqrt(ck.seq_len)
    elif cfg.data.crops:  # the data sets a scratch model's length: check the crop model before reading any task
        scratch = dataclasses.replace(cfg.model, seq_len=GRID_CELLS)
        fit_config(scratch, crop_margin=cfg.data.canvas_margin, crop_key="data.canvas")
    data = load_train_data(cfg.data, puzzle_names=names)
    if is_main:
        print(
            f"train: {len(data.groups)} tasks, {data.num_puzzles} puzzles, {len(data.puzzle_names)} embedding rows, "
            + ("per-task crops" if cfg.data.crops else f"{data.canvas}x{data.canvas} canvas")
            + f" ({time.time() - t0:.1f}s)",
            file=sys.stderr,
        )

    margin = cfg.data.canvas_margin if cfg.data.crops else None
    if base:  # --checkpoint: new puzzles start from the mean of its table; --resume: its own table
        names_now = data.puzzle_names if args.checkpoint else None
        model, _ = load_model(base, names_now, seq_len=data.seq_len, crop_margin=margin, crop_key="data.canvas")
    else:
        rows, seed = len(data.puzzle_names), cfg.train.seed
        model = build_model(
            cfg.model, seq_len=data.seq_len, rows=rows, crop_margin=margin, seed=seed, crop_key="data.canvas"
        )
    trainer = Trainer(model, data, cfg.train, accelerator=accelerator, log_path=out / "metrics.jsonl")
    if args.resume:
        trainer.load_state(out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "train.yaml")
        print(
            f"train: {model.num_params():,} parameters, {trainer.total_steps} steps of {cfg.train.global_batch_size} "
            f"sequences on {trainer.device}" + (f" x {trainer.world} processes" if trainer.world > 1 else ""),
            file=sys.stderr,
        )
    until = t0 + 60 * args.minutes if args.minutes else None
    last = trainer.train(until=until, checkpoint_dir=out, extra_config={"data": to_dict(cfg.data)})
    if is_main:
        print(
            f"train: stopped at step {trainer.step_count}/{trainer.total_steps} ({last.get('stopped')}); "
            f"loss {last.get('loss', float('nan')):.4f}, exact accuracy {last.get('exact_accuracy', 0):.3f}; "
            f"checkpoint in {out}",
            file=sys.stderr,
        )
    return 0
