"""Benchmark: TRM training and inference throughput per supervision step, peak memory and (GPU) model FLOP utilisation.

    python evaluation/bench_model.py --config pretrain-arc-agi-1 --device cpu --batch 4 --threads 1
    python evaluation/bench_model.py --config pretrain-arc-agi-1 --device cuda --batch 768     # full ARC size, bf16
    python evaluation/bench_model.py --config pretrain-arc-agi-1 --device cpu --batch 32 model.hidden_size=64 \
        model.H_cycles=1 model.L_cycles=2 model.halt_max_steps=3 data.canvas=8

Training = one Trainer step as `train()` runs it (batch built ahead in a background thread, forward,
stablemax loss, backward, Adam-atan2 + sign-SGD, EMA; metrics read once at the end, as with a large
log_every) on a synthetic task with canvas-filling grids; inference = one evaluation-mode supervision step.
The first training step (which compiles with --compile default) is timed apart and not counted. Then
the same steps run again with the device waited for between phases, for the per-step breakdown: data
(waiting for the batch built ahead, and copying it to the device), forward (model + loss), backward,
optimizer (Adam-atan2, sign-SGD, EMA), sync (reading the metrics to the host); `data_build` is the
background thread's time per batch, off the critical path.
FLOPs are counted analytically (matmuls and attention; norms, activations and RoPE ignored).
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 peak TFLOP/s by device-name fragment (fp16 for T4, which has no bf16); --peak-tflops overrides.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "T4": 65.0,
    "V100": 125.0,
}


def flops_per_token(cfg) -> tuple[float, float]:
    """(training, inference) FLOPs per token of one supervision step, attention variant.

    One pass of the shared network (L_layers blocks) costs per token, in multiply-adds:
    4 D^2 (qkv + out projections) + 2 T D (scores and weighted sum) + 3 D I (SwiGLU, inner width I).
    A supervision step runs it H_cycles * (L_cycles + 1) times; only the last H-cycle has gradients,
    so training adds 2x (backward) for (L_cycles + 1) passes and the lm_head.
    """
    from arc_kit.model.layers import swiglu_width

    D, T = cfg.hidden_size, cfg.seq_len + cfg.prefix_len
    inner = swiglu_width(D, cfg.expansion)
    block = cfg.L_layers * (4 * D * D + 2 * T * D + 3 * D * inner)
    passes = cfg.H_cycles * (cfg.L_cycles + 1)
    head = D * cfg.vocab_size * cfg.seq_len / T  # lm_head on canvas positions only
    infer = 2 * (passes * block + head)
    train = 2 * ((cfg.H_cycles - 1) * (cfg.L_cycles + 1) * block + 3 * ((cfg.L_cycles + 1) * block + head))
    return train, infer


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: process peak RSS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", default="pretrain-arc-agi-1", help="train config (model:/data:/train: YAML) or shipped name"
    )
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.hidden_size=64 data.canvas=8")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=4, help="sequences per supervision step")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument(
        "--compile",
        default="off",
        choices=["off", "default"],
        help="train.compile for the training step, TRM.compile_inference for inference",
    )
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="GPU peak for MFU (default: from the GPU name)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from arc_kit.base.config import from_dict, load_config, to_dict
    from arc_kit.data import Pair, Task
    from arc_kit.model.config import PretrainConfig
    from arc_kit.model.dataset import TrainData
    from arc_kit.model.train import Trainer
    from arc_kit.model.trm import TRM, TRMConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(PretrainConfig, args.config, args.overrides)
    canvas = cfg.data.canvas
    device = torch.device(args.device)
    # A synthetic task whose grids fill the canvas (but the EOS border): every position is a real token.
    rng = np.random.default_rng(0)
    side = max(1, canvas - 1)
    task = Task(
        "bench",
        [
            Pair(rng.integers(0, 10, (side, side)).tolist(), rng.integers(0, 10, (side, side)).tolist())
            for _ in range(4)
        ],
        [],
    )
    data = TrainData.from_tasks([task], num_augmentations=7, seed=0, canvas=canvas, translate=True)
    torch.manual_seed(0)
    mcfg = from_dict(
        TRMConfig, dict(to_dict(cfg.model), seq_len=canvas * canvas, num_puzzle_identifiers=len(data.puzzle_names))
    )
    model = TRM(mcfg)
    tcfg = from_dict(
        type(cfg.train),
        dict(
            to_dict(cfg.train),
            global_batch_size=args.batch,
            max_steps=10**9,
            progress=False,
            device=args.device,
            precision=args.precision,
            compile=args.compile,
        ),
    )
    trainer = Trainer(model, data, tcfg)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    T = mcfg.seq_len + mcfg.prefix_len

    # ---- inference: one evaluation supervision step on a full batch, the step `predict` runs (compiled with
    # --compile: TRM.compile_inference); the first call (compiling) is timed apart
    batch = {k: torch.from_numpy(v).to(device) for k, v in trainer.sampler.next_batch().items()}
    model.eval()
    if args.compile != "off":
        model.compile_inference()
    ctx = (lambda: torch.autocast("cuda", dtype=trainer.autocast)) if trainer.autocast else torch.no_grad
    times = []
    with torch.inference_mode(), ctx():
        x, cos_sin = model.embed(batch["inputs"], batch["puzzle_identifiers"]), model.rope(batch)
        z_H, z_L = (z.contiguous() for z in model.initial_state(*batch["inputs"].shape))  # as predict's
        step = model.__dict__.get("_compiled_step", model._eval_step)
        for _i in range(args.steps + 1):
            sync()
            t = time.perf_counter()
            z_H, z_L, *_ = step(z_H, z_L, x, cos_sin)
            sync()
            times.append(time.perf_counter() - t)
    infer_first_s = times[0]
    infer_s = float(np.median(times[1:]))
    infer_mem = peak_memory_mb(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # ---- training: the first step (compiles when asked) apart, then steps as train() runs them
    sync()
    t = time.perf_counter()
    trainer.step()
    sync()
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    for _i in range(args.steps):
        pending = trainer._step()
    trainer._read_metrics(*pending)
    train_s = (time.perf_counter() - t) / args.steps
    train_mem = peak_memory_mb(device)
    trainer.phase_seconds = {}
    built = trainer.batches.seconds
    for _i in range(args.steps):
        pending = trainer._step()
        trainer._read_metrics(*pending)
    phases = {k: v / args.steps for k, v in trainer.phase_seconds.items()}
    phases["data_build"] = (trainer.batches.seconds - built) / args.steps

    f_train, f_infer = flops_per_token(mcfg)
    res = {
        "config": str(args.config),
        "overrides": args.overrides,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "precision": str(trainer.autocast or "float32").replace("torch.", ""),
        "params": model.num_params(),
        "hidden": mcfg.hidden_size,
        "H_cycles": mcfg.H_cycles,
        "L_cycles": mcfg.L_cycles,
        "arch": to_dict(mcfg),
        "canvas": canvas,
        "tokens_per_seq": T,
        "batch": args.batch,
        "compile": args.compile,
        "first_step_s": first_s,
        "train_phase_s": phases,
        "train_step_s": train_s,
        "train_seq_per_s": args.batch / train_s,
        "train_tokens_per_s": args.batch * T / train_s,
        "infer_first_step_s": infer_first_s,
        "infer_step_s": infer_s,
        "infer_seq_per_s": args.batch / infer_s,
        "infer_tokens_per_s": args.batch * T / infer_s,
        "train_gflop_per_seq": f_train * T / 1e9,
        "infer_gflop_per_seq": f_infer * T / 1e9,
        "train_peak_mb": train_mem,
        "infer_peak_mb": infer_mem,
        "train_tflops": f_train * T * args.batch / train_s / 1e12,
        "infer_tflops": f_infer * T * args.batch / infer_s / 1e12,
    }
    if device.type == "cuda":
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in res["device_name"]), 0.0)
        if peak:
            res["peak_tflops"] = peak
            res["train_mfu"] = res["train_tflops"] / peak
            res["infer_mfu"] = res["infer_tflops"] / peak
    if args.json:
        print(json.dumps(res))
        return 0
    print(
        f"{res['device_name']} ({res['device']}), {res['threads']} threads of {res['cpu_cores']} cores, "
        f"{res['precision']}"
    )
    print(
        f"model: {res['params']:,} parameters, hidden {mcfg.hidden_size}, H{mcfg.H_cycles} L{mcfg.L_cycles}, "
        f"{canvas}x{canvas} canvas = {T} tokens/seq, batch {args.batch}"
    )
    for kind in ("train", "infer"):
        line = (
            f"{kind:5s}: {res[f'{kind}_step_s'] * 1000:9.1f} ms/step  {res[f'{kind}_seq_per_s']:9.2f} seq/s  "
            f"{res[f'{kind}_tokens_per_s']:11.0f} tok/s  {res[f'{kind}_gflop_per_seq']:8.2f} GFLOP/seq  "
            f"{res[f'{kind}_tflops']:7.3f} TFLOP/s  peak mem {res[f'{kind}_peak_mb']:8.0f} MiB"
        )
        if f"{kind}_mfu" in res:
            line += f"  MFU {100 * res[f'{kind}_mfu']:.1f}%"
        print(line)
    on_path = sum(v for k, v in phases.items() if k != "data_build")
    print(
        f"train step breakdown (device waited for between phases; compile {args.compile}, first step "
        f"{first_s:.2f} s): "
        + ", ".join(
            f"{k} {1000 * phases.get(k, 0.0):.1f} ms ({100 * phases.get(k, 0.0) / on_path:.0f}%)"
            for k in ("data", "forward", "backward", "optimizer", "sync")
        )
        + f"; data_build {1000 * phases.get('data_build', 0.0):.1f} ms in the background"
    )
    print("(per supervision step; CPU peak memory is the process's peak RSS, GPU's is max allocated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
