"""Benchmark: the kit's HRM against the reference hrm.py, same weights and batch, steps interleaved in one process.

    python evaluation/bench_hrm.py --size cpu-demo-hrm --batch 64 --rounds 10     # configs/cpu-demo-hrm.yaml's model
    python evaluation/bench_hrm.py --size fixture --batch 4 --rounds 5            # the conformance fixture's model
    python evaluation/bench_hrm.py --size full --batch 1 --rounds 2               # the published ARC HRM (slow)

Both sides do the same work on a ready batch, eager, float32, on `--threads` torch threads:
  train = one training-mode supervision step from a fresh carry (forward, the no-grad second forward for the
          bootstrapped q_continue target, the loss: stablemax cross-entropy + 0.5 (q_halt + q_continue BCE),
          backward); kit: `HRM` + `act_loss`; reference: `HierarchicalReasoningModel_ACTV1` in its `ACTLossHead`.
  eval  = one evaluation-mode supervision step under inference_mode.
Built from the same seed, the two start with identical weights (checked). Rounds alternate kit and
reference step by step (kit train, reference train, kit eval, reference eval), so a load change on a shared
machine hits both alike; the ratios are of the median step times (> 1: the kit is faster).
The reference needs `einops` and `pydantic` (benchmark-only dependencies); the kit never imports it.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[1] / "shared" / "reference" / "trm"
COMMON = dict(name="recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1", pos_encodings="rope", expansion=4)
SIZES = {
    # configs/cpu-demo-hrm.yaml's network on its 9x9 task canvas (its one prefix slot, halting over 3 steps)
    "cpu-demo-hrm": dict(
        arch=dict(COMMON, hidden_size=64, num_heads=4, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2, expansion=2),
        canvas=9,
        ndim=64,
    ),
    # tests/fixtures/hrm-reference's model on the 30x30 canvas
    "fixture": dict(
        arch=dict(COMMON, hidden_size=64, num_heads=4, H_layers=2, L_layers=2, H_cycles=2, L_cycles=2),
        canvas=30,
        ndim=64,
    ),
    # the published ARC HRM (27.3M parameters)
    "full": dict(
        arch=dict(COMMON, hidden_size=512, num_heads=8, H_layers=4, L_layers=4, H_cycles=2, L_cycles=2),
        canvas=30,
        ndim=512,
    ),
}


def build(size: str, batch: int, rows: int = 8):
    """(kit model, reference loss head, batch) with identical weights."""
    import torch

    sys.path.insert(0, str(REFERENCE))
    from models.losses import ACTLossHead
    from models.recursive_reasoning.hrm import HierarchicalReasoningModel_ACTV1

    from arc_kit.model.build import instantiate
    from arc_kit.model.config import TRMConfig

    spec = SIZES[size]
    L = spec["canvas"] ** 2
    arch = dict(
        spec["arch"],
        puzzle_emb_ndim=spec["ndim"],
        halt_max_steps=3,
        halt_exploration_prob=0.1,
        forward_dtype="float32",
    )
    torch.manual_seed(0)
    ref = HierarchicalReasoningModel_ACTV1(
        dict(arch, batch_size=batch, seq_len=L, num_puzzle_identifiers=rows, vocab_size=12)
    )
    head = ACTLossHead(ref, loss_type="stablemax_cross_entropy")
    torch.manual_seed(0)  # the kit builds in the reference's order: the same seed gives the same weights
    kit = instantiate(TRMConfig.from_reference(arch, seq_len=L, vocab_size=12, num_puzzle_identifiers=rows))
    ref_state = ref.inner.state_dict()
    if not all(torch.equal(v, ref_state[k]) for k, v in kit.state_dict().items()):
        raise SystemExit("bench_hrm: the kit's seeded initialisation differs from the reference's")
    with torch.no_grad():
        ref.inner.puzzle_emb.weights.normal_(0, 0.02)  # rows that matter
        kit.puzzle_emb.weights.copy_(ref.inner.puzzle_emb.weights)
    g = torch.Generator().manual_seed(0)
    data = {
        "inputs": torch.randint(2, 12, (batch, L), generator=g, dtype=torch.int32),
        "labels": torch.randint(2, 12, (batch, L), generator=g, dtype=torch.int32),
        "puzzle_identifiers": torch.randint(0, rows, (batch,), generator=g, dtype=torch.int32),
    }
    return kit, head, data


def step_functions(kit, head, data):
    """{"kit_train", "ref_train", "kit_eval", "ref_eval"}: one supervision step each."""
    import torch

    from arc_kit.model.loss import act_loss

    B = data["inputs"].shape[0]

    def kit_train():
        kit.train()
        carry, out = kit(kit.initial_carry(data), data)
        (act_loss(carry, out)[0] / B).backward()
        kit.zero_grad(set_to_none=True)

    def ref_train():
        head.train()
        _, loss, _, _, _ = head(return_keys=[], carry=head.initial_carry(data), batch=data)
        (loss / B).backward()
        head.zero_grad(set_to_none=True)

    def kit_eval():
        kit.eval()
        with torch.inference_mode():
            kit(kit.initial_carry(data), data)

    def ref_eval():
        head.eval()
        with torch.inference_mode():
            head(return_keys=[], carry=head.initial_carry(data), batch=data)

    return {"kit_train": kit_train, "ref_train": ref_train, "kit_eval": kit_eval, "ref_eval": ref_eval}


def check_same_outputs(kit, head, data) -> float:
    """Max abs difference of the eval-step logits (the two sides compute the same function)."""
    import torch

    kit.eval()
    head.eval()
    with torch.inference_mode():
        _, a = kit(kit.initial_carry(data), data)
        _, _, _, b, _ = head(return_keys=["logits"], carry=head.initial_carry(data), batch=data)
    return float((a["logits"].float() - b["logits"].float()).abs().max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="cpu-demo-hrm")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    kit, head, data = build(args.size, args.batch)
    diff = check_same_outputs(kit, head, data)
    fns = step_functions(kit, head, data)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(args.rounds + 1):
        for name, fn in fns.items():  # interleaved: kit, reference, kit, reference
            t0 = time.perf_counter()
            fn()
            if r > 0:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "size": args.size,
        "batch": args.batch,
        "threads": args.threads,
        "rounds": args.rounds,
        "tokens_per_seq": data["inputs"].shape[1],
        "max_abs_logit_diff": diff,
        **{f"{k}_median_s": round(v, 5) for k, v in med.items()},
        "train_ratio": med["ref_train"] / med["kit_train"],
        "eval_ratio": med["ref_eval"] / med["kit_eval"],
    }
    if args.json:
        print(json.dumps(res))
        return 0
    print(
        f"HRM {args.size} (batch {args.batch}, {res['tokens_per_seq']} tokens/seq, {args.threads} thread(s), eager, "
        f"{args.rounds} interleaved rounds; eval logits differ by {diff:.1e})"
    )
    for kind in ("train", "eval"):
        print(
            f"  {kind}: kit {med['kit_' + kind] * 1e3:.1f} ms vs reference {med['ref_' + kind] * 1e3:.1f} ms "
            f"per step (median): x{res[kind + '_ratio']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
