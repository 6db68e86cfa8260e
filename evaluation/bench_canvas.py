"""Task-sized canvas vs the reference 30x30 canvas: throughput of training and inference, and score on the same budget.

    python evaluation/bench_canvas.py --config cpu-demo                 # throughput only (a minute)
    python evaluation/bench_canvas.py --config cpu-demo --runs          # + two full runs on the same tasks and budget
    python evaluation/bench_canvas.py --config cpu-demo --runs budget.total_minutes=5
    python evaluation/bench_canvas.py --crops                            # per-task crops vs 30x30, whole sets

Throughput is measured on the config's model (built from scratch) with random weights: one training step
(forward + backward) and one evaluation batch (all halt steps), per canvas. With --runs, `arc-kit run` runs
the config twice from scratch (model.canvas=task, then model.canvas=30) and the table adds steps reached and scores.
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
    from arc_kit.run.ttt_setup import scratch_model

    model = scratch_model(cfg, canvas, 64).to(device)
    train = measure_train_rate(model, canvas, train_batch, device, None, repeats=2)
    infer = measure_infer_rate(model, canvas, infer_batch, device, repeats=2)
    return train, infer


def crops_vs_canvas(source: str, args) -> None:
    """Training and inference throughput on every task of `source`: per-task crops in length buckets vs the 30x30
    canvas, one small coordinate-position model for both (a 900-token square needs no positions: they are the
    canvas's), measured in interleaved repeats in this process."""
    import numpy as np
    import torch

    from arc_kit.augment import AugmentConfig
    from arc_kit.crops import bucket_length, task_crop
    from arc_kit.data import load_tasks
    from arc_kit.infer import encode_views, make_batches, plan_views, run_model
    from arc_kit.model.config import TrainConfig, TRMConfig
    from arc_kit.model.dataset import TrainData
    from arc_kit.model.train import Trainer
    from arc_kit.model.trm import TRM

    tasks = load_tasks(source, lenient=True).tasks
    if args.limit:
        tasks = dict(list(tasks.items())[: args.limit])
    crops = {t: task_crop(x) for t, x in tasks.items()}
    crop_tokens = np.array([h * w for h, w in crops.values()])
    bucket_tokens = np.array([bucket_length(n) for n in crop_tokens])
    data = {
        mode: TrainData.from_tasks(list(tasks.values()), 1, AugmentConfig(), seed=0, crops=mode == "crop")
        for mode in ("crop", "canvas")
    }
    arch = TRMConfig(
        hidden_size=args.hidden,
        num_heads=max(1, args.hidden // 32),
        L_layers=2,
        H_cycles=2,
        L_cycles=2,
        seq_len=900,
        puzzle_emb_ndim=args.hidden,
        puzzle_emb_len=1,
        num_puzzle_identifiers=len(data["crop"].puzzle_names),
        halt_max_steps=2,
        positions="coords",
        crops=True,
    )
    torch.manual_seed(0)
    model = TRM(arch)
    cfg = TrainConfig(
        global_batch_size=args.train_batch, lr_warmup_steps=1, ema=False, progress=False, device=args.device
    )
    trainers = {mode: Trainer(model, data[mode], cfg) for mode in data}
    views = {
        "crop": plan_views(tasks, {}, {}, {t: 30 for t in tasks}, 1, crops=crops),
        "canvas": plan_views(tasks, {}, {}, {t: 30 for t in tasks}, 1),
    }
    sums = {
        m: {"train_s": 0.0, "train_seq": 0, "train_tok": 0, "infer_s": 0.0, "infer_seq": 0, "infer_tok": 0}
        for m in data
    }
    for tr in trainers.values():  # warm-up: allocations, every crop bucket's first step
        for _ in range(2):
            tr.step()
    for _ in range(args.repeats):
        for mode, tr in trainers.items():
            t = time.perf_counter()
            for _ in range(args.train_steps):
                tr.step()
                sums[mode]["train_tok"] += args.train_batch * tr.carry.current_data["inputs"].shape[1]
            sums[mode]["train_s"] += time.perf_counter() - t
            sums[mode]["train_seq"] += args.train_batch * args.train_steps
            t = time.perf_counter()
            for batch in make_batches(views[mode], args.infer_batch):
                enc = encode_views(batch, tasks)
                run_model(model, enc, trainers[mode].device)
                sums[mode]["infer_tok"] += enc["inputs"].size
            sums[mode]["infer_s"] += time.perf_counter() - t
            sums[mode]["infer_seq"] += len(views[mode])
    if args.json:  # one JSON object per source (gpu_check.sh collects them)
        row = {"source": source, "tasks": len(tasks), "test_inputs": len(views["crop"]), "device": args.device}
        row.update(mean_crop=float(crop_tokens.mean()), mean_bucket=float(bucket_tokens.mean()), hidden=args.hidden)
        for mode, s in sums.items():
            row[mode] = {"train_seq_s": s["train_seq"] / s["train_s"], "infer_views_s": s["infer_seq"] / s["infer_s"]}
        row["speedup_train"] = row["crop"]["train_seq_s"] / row["canvas"]["train_seq_s"]
        row["speedup_infer"] = row["crop"]["infer_views_s"] / row["canvas"]["infer_views_s"]
        print(json.dumps(row), flush=True)
        return
    print(
        f"\n## {source}: {len(tasks)} tasks, {len(views['crop'])} test inputs; mean crop {crop_tokens.mean():.0f} "
        f"tokens, mean bucket {bucket_tokens.mean():.0f} tokens (per task), canvas 900"
    )
    print("| layout | train seq/s | train tokens/s | inference views/s | inference tokens/s |")
    print("|---|---|---|---|---|")
    rate = {}
    for mode, s in sums.items():
        rate[mode] = (s["train_seq"] / s["train_s"], s["infer_seq"] / s["infer_s"])
        print(
            f"| {'crops + buckets' if mode == 'crop' else '30x30 canvas'} | {rate[mode][0]:.1f} | "
            f"{s['train_tok'] / s['train_s']:.0f} | {rate[mode][1]:.1f} | {s['infer_tok'] / s['infer_s']:.0f} |"
        )
    print(
        f"speed-up of crops: train x{rate['crop'][0] / rate['canvas'][0]:.2f}, "
        f"inference x{rate['crop'][1] / rate['canvas'][1]:.2f}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="cpu-demo")
    ap.add_argument("--runs", action="store_true", help="also run the config with both canvases and score them")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=0, help="probe batch (default: the config's, at most 128)")
    ap.add_argument("--out", default="runs/bench-canvas")
    ap.add_argument("--crops", action="store_true", help="per-task crops vs 30x30 on whole evaluation sets instead")
    ap.add_argument("--sources", nargs="+", default=["arc-agi-1/evaluation", "arc-agi-2/evaluation"])
    ap.add_argument("--hidden", type=int, default=64, help="--crops: the small model's hidden size")
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=8, help="--crops: timed training steps per repeat")
    ap.add_argument("--infer-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="--crops: cpu or cuda (float32)")
    ap.add_argument("--limit", type=int, default=0, help="--crops: only the first N tasks of each set")
    ap.add_argument("--json", action="store_true", help="--crops: one JSON line per set instead of a table")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    import torch

    if args.crops:
        threads = args.threads or 1
        torch.set_num_threads(threads)
        print(
            f"# crops vs canvas: hidden {args.hidden}, train batch {args.train_batch} x {args.train_steps} steps, "
            f"inference batch {args.infer_batch}, {args.repeats} interleaved repeats, {threads} torch threads, "
            f"torch {torch.__version__}",
            file=sys.stderr if args.json else sys.stdout,
        )
        for source in args.sources:
            crops_vs_canvas(source, args)
        return 0

    from arc_kit.data import load_tasks
    from arc_kit.run.config import load_run_config
    from arc_kit.run.hardware import free_cores
    from arc_kit.run.ttt_setup import ttt_canvas

    # canvases of a model built here: a checkpoint (cpu-demo's crop-trained starter) would bring its own
    args.overrides = ["model.checkpoint=null", *args.overrides]
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
