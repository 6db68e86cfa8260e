"""How much running a full-canvas (reference) model on per-task crops changes its outputs, on the reference fixture.

    python evaluation/crop_agreement.py [--source arc-agi-1/evaluation] [--limit N]

The fixture's reference model (random weights, ../shared/fixtures/trm-reference) runs every test input of the
source (identity view, puzzle rows cycling over the fixture's table) twice: on the full 30x30 canvas as the
reference does, and on the task's crop (model.canvas: crop). Printed: the share of crop cells whose argmax token
agrees, and the share of test inputs whose decoded grid is the same. The outputs differ because the reference
attends over every PAD cell of the canvas, which a crop leaves out; accuracy needs a trained checkpoint on a GPU.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT.parent / "shared" / "fixtures" / "trm-reference"
PREFIX = "_orig_mod.model.inner."


def main() -> int:
    from arc_kit.crops import task_crop
    from arc_kit.data import load_tasks
    from arc_kit.infer import encode_views, make_batches, plan_views, run_model
    from arc_kit.model.config import crop_config
    from arc_kit.model.trm import TRM, TRMConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="arc-agi-1/evaluation")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sd = torch.load(REF / "step_0", map_location="cpu", weights_only=True)
    sd = {k.removeprefix(PREFIX): v for k, v in sd.items()}
    arch = yaml.safe_load((REF / "all_config.yaml").read_text())["arch"]
    rows = sd["puzzle_emb.weights"].shape[0]
    full = TRM(TRMConfig.from_reference(arch, seq_len=900, vocab_size=12, num_puzzle_identifiers=rows))
    full.load_state_dict(sd, strict=True)
    full.eval()
    crop = TRM(crop_config(full.config))
    crop.load_state_dict(sd, strict=True)
    crop.eval()

    tasks = load_tasks(args.source, limit=args.limit or None, lenient=True).tasks
    names = {tid: [tid] for tid in tasks}
    ids = sorted(tasks)
    row_of = {tid: 1 + i % (rows - 1) for i, tid in enumerate(ids)}
    canvas_views = plan_views(tasks, names, {tid: row_of[tid] for tid in tasks}, {t: 30 for t in tasks}, 1)
    crop_views = plan_views(
        tasks,
        names,
        {tid: row_of[tid] for tid in tasks},
        {t: 30 for t in tasks},
        1,
        crops={t: task_crop(x) for t, x in tasks.items()},
    )
    cells = agree = same = total = 0
    by_key_full = {}
    for batch in make_batches(canvas_views, 64):
        tokens, _, _ = run_model(full, encode_views(batch, tasks), "cpu")
        for v, t in zip(batch, tokens, strict=True):
            by_key_full[v.key] = t
    from arc_kit.crops import crop_board
    from arc_kit.encoding import crop_tokens

    for batch in make_batches(crop_views, 64):
        tokens, _, _ = run_model(crop, encode_views(batch, tasks), "cpu")
        for v, t in zip(batch, tokens, strict=True):
            ref = by_key_full[v.key].reshape(30, 30)
            board = crop_board(t, v.crop).reshape(30, 30)
            h, w = v.crop
            cells += h * w
            agree += int((ref[:h, :w] == board[:h, :w]).sum())
            same += int(np.array_equal(crop_tokens(ref.reshape(-1)), crop_tokens(board.reshape(-1))))
            total += 1
    print(
        f"{args.source}: {total} test inputs; argmax tokens agreeing inside the crop {agree / cells:.4f} "
        f"({agree}/{cells} cells); decoded grid identical {same / total:.4f} ({same}/{total})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
