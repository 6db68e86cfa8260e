"""Stage processes: `python -m arc_kit.run.stages {train,infer} OUT ...`, started and watched by the run supervisor."""

import argparse
import logging
import os
import sys
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import atomic_write_json
from arc_kit.run.config import run_config_from_dict
from arc_kit.run.directory import CONFIG_FILE, LOG_FILE, TASKS_FILE, load_saved_tasks, setup_logging
from arc_kit.run.faults import inject_fault
from arc_kit.run.infer_stage import infer_stage
from arc_kit.run.lock import stage_lock
from arc_kit.run.train_stage import train_stage
from arc_kit.run.watchdog import watch_parent

# ---------------------------------------------------------------- shared helpers

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
    try:
        own_lock = stage_lock(out, args.stage)  # None: under the lock of the run that started this stage
    except ArcKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
            result = train_stage(
                out, cfg, task_set, args.until, args.train_until or args.until, args.resume, log, accelerator
            )
        else:
            inject_fault("infer_start")
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
    if own_lock is not None:
        own_lock.release()
    return code


if __name__ == "__main__":
    sys.exit(main())
