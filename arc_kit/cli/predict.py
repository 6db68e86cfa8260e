"""Commands `trm-identifiers` (reference puzzle identifiers) and `predict` (full-protocol prediction)."""

import json
import sys
import time
from pathlib import Path

from arc_kit.augment import SEP
from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import (
    atomic_write_json,
    check_writable_dir,
    check_writable_file,
    refuse_input_as_output,
    same_path,
)
from arc_kit.cli.common import add_task_args, task_input_files, tasks_from_args
from arc_kit.identifiers import BLANK, build_identifiers
from arc_kit.model.device import resolve_device


def add_commands(subparsers) -> None:

    p = subparsers.add_parser(
        "trm-identifiers",
        help="rebuild the reference TRM puzzle-identifier list (embedding row -> puzzle)",
        description="Replay the reference TRM ARC dataset builder (numpy seed, subset order, augmentation "
        "trials) and write its identifier list: a JSON array, index = puzzle identifier = row of "
        "the checkpoint's puzzle-embedding table. Published builds: ARC-AGI-1 = --subsets training "
        "evaluation concept --test-set evaluation (876,406 rows); ARC-AGI-2 = --subsets training2 "
        "evaluation2 concept --test-set evaluation2 (1,191,730 rows).",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="folder with {prefix}_{subset}_challenges.json and _solutions.json (the reference's kaggle/combined)",
    )
    p.add_argument(
        "--subsets", nargs="+", required=True, help="subsets in build order, e.g. training evaluation concept"
    )
    p.add_argument("--test-set", required=True, help="subset whose test pairs form the test split, e.g. evaluation")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="identifier list to write (JSON array)")
    p.add_argument(
        "--test-split-out",
        metavar="FILE",
        help="also write the test split's puzzle order as [identifier, number of test examples] pairs",
    )
    p.add_argument("--num-aug", type=int, default=1000, help="augmentations per task (reference: 1000)")
    p.add_argument("--seed", type=int, default=42, help="numpy seed (reference: 42)")
    p.add_argument("--prefix", default="arc-agi", help="input file prefix (reference: arc-agi)")
    p.add_argument("--json", action="store_true", help="print a summary object on stdout")
    p.set_defaults(func=cmd_identifiers)

    p = subparsers.add_parser(
        "predict",
        help="run a checkpoint on tasks under every augmentation it was trained with",
        description="For every test input of every selected task, run the model under the augmented puzzles "
        "that the checkpoint's puzzle table knows for that task (up to 1001 views), map each "
        "prediction back to the original frame and append it to OUT/predictions.jsonl. "
        "Resumes: views already in the file are skipped.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="checkpoint folder (arc-kit import-trm or train output)")
    add_task_args(p, positional=False)
    p.add_argument(
        "--views",
        type=int,
        default=None,
        help="at most N views per task (deterministic subsample, identity first; default: all)",
    )
    p.add_argument("--out", default="predictions", metavar="DIR", help="output folder (predictions.jsonl)")
    p.add_argument("--batch-size", type=int, default=256, help="sequences per forward batch")
    p.add_argument(
        "--early-halt",
        action="store_true",
        help="stop each sequence at the first step whose q_halt logit is > 0 (default: all steps)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the inference step (the first batch of each shape pays the compile time)",
    )
    p.add_argument(
        "--all-steps",
        action="store_true",
        help='write one prediction per supervision step ("step" field), not only the last',
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available; cuda needs a GPU)"
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="forward dtype (default: the checkpoint's on GPU, float32 on CPU)",
    )
    p.add_argument("--json", action="store_true", help="print a summary object on stdout")
    p.set_defaults(func=cmd_predict)


def cmd_identifiers(args) -> int:
    if not 0 <= args.seed < 2**32:
        raise ArcKitError(f"--seed must lie in 0..2**32-1 (a numpy seed), got {args.seed}")
    outputs = [("-o", args.out), ("--test-split-out", args.test_split_out)]
    for i, (opt, path) in enumerate(o for o in outputs if o[1]):
        check_writable_file(path, opt)
        refuse_input_as_output(path, list(Path(args.data).glob("*.json")) + [args.out] * i, opt)
    t0 = time.time()
    names, test_split = build_identifiers(
        args.data, args.subsets, args.test_set, seed=args.seed, num_aug=args.num_aug, prefix=args.prefix, progress=True
    )
    atomic_write_json(args.out, names)
    if args.test_split_out:
        atomic_write_json(args.test_split_out, test_split)
    summary = {
        "identifiers": len(names),
        "tasks": sum(1 for n in names if SEP not in n and n != BLANK),
        "test_split_puzzles": len(test_split),
        "out": args.out,
        "seconds": round(time.time() - t0, 1),
    }
    print(
        f"wrote {args.out}: {len(names):,} identifiers (incl. <blank>), test split {len(test_split):,} puzzles, "
        f"{summary['seconds']} s",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def cmd_predict(args) -> int:
    from arc_kit.model.starter import resolve_checkpoint
    from arc_kit.run.lock import RunLock
    from arc_kit.run.predict import (
        EMPTY,
        PREDICTIONS,
        RUN_FILE,
        PredictConfig,
        predict,
    )

    args.model_dir = str(resolve_checkpoint(args.model_dir))
    check_writable_dir(args.out, "--out")
    if same_path(args.out, args.model_dir):
        raise ArcKitError(f"--out {args.out}: is the checkpoint folder; choose another output folder")
    for name in (PREDICTIONS, EMPTY, RUN_FILE):  # the files predict appends to or rewrites
        refuse_input_as_output(Path(args.out) / name, task_input_files(args), "--out")
    if args.device:
        resolve_device(args.device)
    task_set = tasks_from_args(args, lenient=True)
    cfg = PredictConfig(
        views=args.views,
        batch_size=args.batch_size,
        early_halt=args.early_halt,
        all_steps=args.all_steps,
        compile=args.compile,
        device=args.device,
        dtype=args.dtype,
    )
    with RunLock(args.out, "arc-kit predict"):  # one command at a time writes into --out
        summary = predict(args.model_dir, task_set, args.out, cfg)
    if args.json:
        print(json.dumps(summary))
    return 0
