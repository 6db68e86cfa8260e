"""Benchmark: the kit's training and inference step against the reference TRM model code, side by side in one process.

    python evaluation/bench_reference.py --size full --batch 2 --threads 1            # full ARC size, eager
    python evaluation/bench_reference.py --size cpu-demo --batch 64 --threads 1       # the cpu-demo model
    python evaluation/bench_reference.py --size cpu-demo --batch 64 --compile default # both compiled

Kit training step = one Trainer step as `train()` runs it (data built ahead, forward, stablemax loss,
backward, Adam-atan2 + sign-SGD, EMA), from `bench_model.py`. Reference = the reference model code
(../shared/reference/trm, `TinyRecursiveReasoningModel_ACTV1` wrapped in its `ACTLossHead`) doing the bare
forward + loss + backward of one supervision step on a ready batch: no data pipeline, no optimiser. Inference =
one evaluation-mode supervision step for both. The reference needs `einops` and `pydantic` (benchmark-only
dependencies, never the kit's). The kit never imports the reference; only this script does.
"""

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "shared" / "reference" / "trm"
SIZES = {
    # the published ARC model on the 30x30 canvas
    "full": {"overrides": [], "canvas": 30},
    # cpu-demo's tiny model on its task-sized 9x9 canvas
    "cpu-demo": {
        "overrides": [
            "model.hidden_size=64",
            "model.num_heads=4",
            "model.puzzle_emb_ndim=64",
            "model.puzzle_emb_len=1",
            "model.H_cycles=1",
            "model.L_cycles=2",
            "model.expansion=2",
            "model.halt_max_steps=3",
            "data.canvas=9",
        ],
        "canvas": 9,
    },
}


def kit_rates(size: str, batch: int, steps: int, threads: int, compile_mode: str) -> dict:
    """bench_model.py's figures for the kit at this size (its JSON output)."""
    sys.path.insert(0, str(HERE))
    import bench_model

    argv = ["--device", "cpu", "--batch", str(batch), "--steps", str(steps), "--threads", str(threads)]
    argv += ["--precision", "float32", "--compile", compile_mode, "--json", *SIZES[size]["overrides"]]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_model.main(argv)
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def reference_rates(kit: dict, batch: int, steps: int, compile_mode: str) -> dict:
    """Training (forward + loss + backward) and inference sequences/s of the reference model code."""
    import torch

    sys.path.insert(0, str(REFERENCE))
    from models.losses import ACTLossHead
    from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1

    canvas, n_rows, a = kit["canvas"], 8, kit["arch"]  # the kit's exact architecture, reference names
    keys = (
        "puzzle_emb_ndim",
        "H_cycles",
        "L_cycles",
        "L_layers",
        "hidden_size",
        "expansion",
        "num_heads",
        "pos_encodings",
        "halt_max_steps",
        "halt_exploration_prob",
        "puzzle_emb_len",
        "rms_norm_eps",
        "rope_theta",
    )
    arch = {k: a[k] for k in keys}
    arch.update(
        batch_size=batch,
        seq_len=canvas * canvas,
        num_puzzle_identifiers=n_rows,
        vocab_size=12,
        H_layers=0,
        forward_dtype="float32",
    )
    torch.manual_seed(0)
    head = ACTLossHead(TinyRecursiveReasoningModel_ACTV1(arch), loss_type="stablemax_cross_entropy")
    g = torch.Generator().manual_seed(0)
    L = canvas * canvas
    data = {
        "inputs": torch.randint(2, 12, (batch, L), generator=g, dtype=torch.int32),
        "labels": torch.randint(2, 12, (batch, L), generator=g, dtype=torch.int32),
        "puzzle_identifiers": torch.randint(0, n_rows, (batch,), generator=g, dtype=torch.int32),
    }
    step = torch.compile(head) if compile_mode != "off" else head

    def train_step() -> None:
        carry = head.initial_carry(data)
        _carry, loss, _metrics, _outputs, _done = step(return_keys=[], carry=carry, batch=data)
        (loss / batch).backward()
        head.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.inference_mode():
            carry = head.initial_carry(data)
            step(return_keys=[], carry=carry, batch=data)

    out = {}
    for name, fn, mode in (("train", train_step, True), ("infer", infer_step, False)):
        head.train(mode)
        t0 = time.perf_counter()
        fn()  # warm-up (and compilation)
        out[f"{name}_first_step_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        out[f"{name}_seq_per_s"] = batch * steps / (time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu-demo")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", default="off", choices=["off", "default"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    kit = kit_rates(args.size, args.batch, args.steps, args.threads, args.compile)
    ref = reference_rates(kit, args.batch, args.steps, args.compile)
    res = {
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "compile": args.compile,
        "tokens_per_seq": kit["tokens_per_seq"],
        "kit_train_seq_per_s": kit["train_seq_per_s"],
        "kit_infer_seq_per_s": kit["infer_seq_per_s"],
        "kit_train_phase_s": kit.get("train_phase_s"),
        "ref_train_seq_per_s": ref["train_seq_per_s"],
        "ref_infer_seq_per_s": ref["infer_seq_per_s"],
        "train_ratio": kit["train_seq_per_s"] / ref["train_seq_per_s"],
        "infer_ratio": kit["infer_seq_per_s"] / ref["infer_seq_per_s"],
    }
    if args.json:
        print(json.dumps(res))
        return 0
    print(
        f"{args.size} (batch {args.batch}, {args.threads} thread(s), compile {args.compile}, "
        f"{res['tokens_per_seq']} tokens/seq)"
    )
    print(
        f"  train: kit whole step {res['kit_train_seq_per_s']:.2f} seq/s vs reference fwd+bwd "
        f"{res['ref_train_seq_per_s']:.2f} seq/s: x{res['train_ratio']:.2f}"
    )
    print(
        f"  infer: kit {res['kit_infer_seq_per_s']:.2f} seq/s vs reference {res['ref_infer_seq_per_s']:.2f} seq/s: "
        f"x{res['infer_ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
