"""Task-sized canvas vs the reference 30x30 canvas: throughput of training and inference, and score on the same budget.

    python evaluation/bench_canvas.py --config cpu-demo                 # throughput only (a minute)
    python evaluation/bench_canvas.py --config cpu-demo --runs          # + two full runs on the same tasks and budget
    python evaluation/bench_canvas.py --config cpu-demo --runs budget.total_minutes=5

Throughput is measured on the config's model (built from scratch) with random weights: one training step
(forward + backward) and one evaluation batch (all halt steps), per canvas. With --runs, `arc-kit run` runs
the config twice (model.canvas=task, then model.canvas=30) and the table adds steps reached and scores.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def throughput(cfg, canvas: int, train_batch: int, infer_batch: int, device) -> tuple[float, float]:
    from arc_kit.infer import measure_infer_rate
    from arc_kit.model.train import measure_train_rate
    from arc_kit.run.train_stage import scratch_model

    model = scratch_model(cfg, canvas, 64).to(device)
    train = measure_train_rate(model, canvas, train_batch, device, None, repeats=2)
    infer = measure_infer_rate(model, canvas, infer_batch, device, repeats=2)
    return train, infer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="cpu-demo")
    ap.add_argument("--runs", action="store_true", help="also run the config with both canvases and score them")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0, help="probe batch (default: the config's, at most 128)")
    ap.add_argument("--out", default="runs/bench-canvas")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import torch

    from arc_kit.data import load_tasks
    from arc_kit.run.config import load_run_config
    from arc_kit.run.hardware import free_cores
    from arc_kit.run.train_stage import ttt_canvas

    cfg = load_run_config(args.config, args.overrides + ["model.canvas=task"])
    tasks = load_tasks(
        cfg.tasks.source, ids=cfg.tasks.ids, max_size=cfg.tasks.max_size, limit=cfg.tasks.limit, lenient=True
    )
    small = ttt_canvas(cfg, list(tasks.tasks.values()))
    threads = args.threads or free_cores()
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.runtime.device != "cpu" else "cpu")
    tb = args.batch or min(128, int(cfg.ttt.train.get("global_batch_size", 128)))
    ib = args.batch or min(128, cfg.inference.batch_size)
    print(
        f"# {cfg.name}: {len(tasks.tasks)} tasks, task-sized canvas {small}x{small}; device {device}, "
        f"{threads} torch threads, torch {torch.__version__}; train batch {tb}, eval batch {ib}"
    )
    rows = {}
    for canvas in (small, 30):
        t0 = time.time()
        tr, inf = throughput(cfg, canvas, tb, ib, device)
        rows[canvas] = {"train_seq_per_s": tr, "infer_seq_per_s": inf}
        print(
            f"canvas {canvas:>2}x{canvas:<2} ({canvas * canvas:>3} tokens): train {tr:8.1f} seq/s   "
            f"inference {inf:8.1f} views/s   ({time.time() - t0:.0f}s)",
            flush=True,
        )
    print(
        f"speed-up of the task-sized canvas: "
        f"train x{rows[small]['train_seq_per_s'] / rows[30]['train_seq_per_s']:.1f}, "
        f"inference x{rows[small]['infer_seq_per_s'] / rows[30]['infer_seq_per_s']:.1f}"
    )
    if not args.runs:
        return 0
    print("\n| canvas | train seq/s (measured in run) | steps | wall | per-output | per-task (95% CI) |")
    print("|---|---|---|---|---|---|")
    for canvas in ("task", "30"):
        out = Path(args.out) / f"canvas-{canvas}"
        cmd = [
            sys.executable,
            "-m",
            "arc_kit.cli",
            "run",
            "--config",
            args.config,
            "--out",
            str(out),
            "--fresh",
            "--no-progress",
            f"model.canvas={canvas}",
        ] + args.overrides
        t0 = time.time()
        subprocess.run(cmd, stdout=subprocess.DEVNULL)
        wall = time.time() - t0
        state = json.loads((out / "state.json").read_text())["stages"]
        plan = json.loads((out / "plan.json").read_text()) if (out / "plan.json").is_file() else {}
        score = json.loads((out / "score.json").read_text()) if (out / "score.json").is_file() else None
        sc = (
            (
                f"{score['score_per_output']:.4f} | {score['score_per_task']:.4f} [{score['ci95'][0]:.3f}, "
                f"{score['ci95'][1]:.3f}]"
            )
            if score
            else "- | -"
        )
        print(
            f"| {plan.get('canvas', canvas)} | {plan.get('train_seq_per_s', 0):.1f} | "
            f"{state.get('train', {}).get('steps', 0)} | {wall / 60:.1f} min | {sc} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
