"""Model commands: `import-reference` (alias `import-trm`), `forward` (raw outputs), `checkpoint download`."""

import sys
from pathlib import Path

from arc_kit.base.errors import ArcKitError
from arc_kit.base.files import (
    check_writable_dir,
    check_writable_file,
    refuse_input_as_output,
)
from arc_kit.identifiers import RECIPES, build_identifiers, read_identifiers, recipe_for_rows
from arc_kit.model.device import resolve_device
from arc_kit.model.hub import download_checkpoint, load_preset


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "import-reference",
        aliases=["import-trm"],
        help="convert a reference TRM or HRM checkpoint (step_N + all_config.yaml) into a kit checkpoint",
        description="Convert a checkpoint written by the reference trainer (TRM or HRM: the config's arch name "
        "says which) into the kit's checkpoint directory. Without identifiers the puzzle rows are named row0, "
        "row1, ... and only uses that need no row names are allowed (test-time training from the table's mean).",
    )
    p.add_argument(
        "step_file", metavar="STEP_FILE", help="reference checkpoint (torch.save state dict, e.g. step_518071)"
    )
    p.add_argument("--config", required=True, help="the run's all_config.yaml (its arch: section is used)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--identifiers", help="identifiers.json (or .json.gz) of the dataset build: row -> puzzle name")
    g.add_argument(
        "--rebuild-identifiers",
        metavar="DATA_DIR",
        help="rebuild the identifier list from the reference builder's input files in DATA_DIR",
    )
    p.add_argument(
        "--subsets",
        nargs="+",
        help="with --rebuild-identifiers: subsets in build order (default: inferred from the table size)",
    )
    p.add_argument("--test-set", help="with --rebuild-identifiers: the test subset (default: inferred)")
    p.add_argument(
        "--num-aug",
        type=int,
        default=1000,
        help="with --rebuild-identifiers: augmentations per task of the build (reference 1000)",
    )
    p.add_argument("--seq-len", type=int, default=None, help="canvas tokens (default 900, the reference 30x30)")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="output checkpoint directory")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint in MODEL_DIR")
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser(
        "forward",
        help="run N evaluation supervision steps on inputs from an npz and save the raw outputs",
        description="Reads inputs [B, L] and puzzle_identifiers [B] (and optional labels [B, L]) from an npz, runs N "
        "supervision steps in evaluation mode from the initial state and writes logits [N, B, L, V], "
        "q_halt_logits and q_continue_logits [N, B] (and loss [N] with labels).",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="kit checkpoint folder")
    p.add_argument(
        "--inputs",
        required=True,
        metavar="IO.npz",
        help="npz with inputs [B, L] and puzzle_identifiers [B] (optional labels [B, L])",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="supervision steps (default: the model's halt_max_steps; more steps keep recursing without a reset)",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT.npz", help="npz file to write the outputs to")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="forward dtype (default: saved)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (cuda needs a GPU)")
    p.add_argument("--states", action="store_true", help="also write z_H_step{k}, z_L_step{k} [B, T, D]")
    p.set_defaults(func=cmd_forward)

    add_checkpoint_command(subparsers)


def _identifiers(args, rows: int | None):
    """(names or None, description) from --identifiers / --rebuild-identifiers."""
    if args.identifiers:
        return read_identifiers(args.identifiers), args.identifiers
    if args.rebuild_identifiers:
        subsets, test_set = args.subsets, args.test_set
        if subsets is None or test_set is None:
            recipe = recipe_for_rows(rows) if rows is not None else None
            if recipe is None:
                known = ", ".join(f"{r.rows:,}" for r in RECIPES.values())
                raise ArcKitError(
                    f"{args.step_file}: a puzzle table of {rows} rows matches no known reference build "
                    f"({known} rows): give --subsets and --test-set"
                )
            subsets, test_set = subsets or list(recipe.subsets), test_set or recipe.test_set
        print(
            f"import-trm: rebuilding identifiers from {args.rebuild_identifiers} "
            f"(subsets {' '.join(subsets)}, test set {test_set}, {args.num_aug} augmentations)",
            file=sys.stderr,
        )
        names, _ = build_identifiers(args.rebuild_identifiers, subsets, test_set, num_aug=args.num_aug)  # + test split
        return names, f"rebuilt from {args.rebuild_identifiers}: subsets {' '.join(subsets)}, test set {test_set}"
    return None, ""


def _table_rows(step_file: str) -> int | None:
    """Rows of the reference checkpoint's puzzle table (memory-mapped peek), None if it cannot tell."""
    import torch

    try:
        sd = torch.load(step_file, map_location="cpu", weights_only=True, mmap=True)
        return next((v.shape[0] for k, v in sd.items() if str(k).endswith("puzzle_emb.weights")), None)
    except Exception:
        return None  # import_reference reports the real problem


def cmd_import(args) -> int:
    from arc_kit.model.checkpoint import (
        CONFIG_FILE,
        MODEL_FILE,
        PUZZLES_FILE,
        STATE_FILES,
        TABLE_FILE,
    )
    from arc_kit.model.reference import import_reference

    out = Path(args.out)
    check_writable_dir(out, "-o")
    inputs = [args.step_file, args.config, args.identifiers]
    for name in (CONFIG_FILE, MODEL_FILE, PUZZLES_FILE, TABLE_FILE, *STATE_FILES.values()):  # what the import writes
        refuse_input_as_output(out / name, inputs, "-o")
    if args.num_aug < 0:
        raise ArcKitError(f"--num-aug must be at least 0, got {args.num_aug}")
    if args.seq_len is not None and args.seq_len < 1:
        raise ArcKitError(f"--seq-len must be at least 1, got {args.seq_len}")
    if (out / CONFIG_FILE).exists() and not args.force:
        raise ArcKitError(f"{out}: already holds a checkpoint (use --force to overwrite)")
    if (args.subsets or args.test_set) and not args.rebuild_identifiers:
        raise ArcKitError("import-trm: --subsets/--test-set only go with --rebuild-identifiers")
    rows = _table_rows(args.step_file) if args.rebuild_identifiers else None
    names, source = _identifiers(args, rows)
    try:
        info = import_reference(
            args.step_file, args.config, out, identifiers=names, identifiers_source=source, seq_len=args.seq_len
        )
    except ArcKitError as e:
        # torch's refusal advises reloading with weights_only=False (arbitrary code execution): never pass that on
        if "Weights only load failed" in str(e) or "weights_only" in str(e):
            raise ArcKitError(
                f"{args.step_file}: not a PyTorch checkpoint that loads safely: not a plain state dict "
                "of tensors (arc-kit loads with weights_only=True and never unpickles anything else)"
            ) from None
        raise
    c = info.config
    layers = f"{c.H_stack_layers} H + {c.L_layers} L layers" if c.kind == "hrm" else f"{c.L_layers} layers"
    print(
        f"import: {args.step_file} -> {out}: {c.kind.upper()}, hidden {c.hidden_size}, {layers}, "
        f"H_cycles {c.H_cycles}, L_cycles {c.L_cycles}, halt_max_steps {c.halt_max_steps}, "
        f"{len(info.puzzle_names):,} puzzle rows "
        f"({'named' if names is not None else 'numbered row0..'})",
        file=sys.stderr,
    )
    return 0


def cmd_forward(args) -> int:
    from arc_kit.model.forward import forward_steps, read_forward_inputs, write_npz

    path = Path(args.inputs)
    check_writable_file(args.out, "-o")
    model_files = sorted(Path(args.model_dir).iterdir()) if Path(args.model_dir).is_dir() else []
    refuse_input_as_output(args.out, [path] + model_files, "-o")
    if args.steps is not None and args.steps < 1:
        raise ArcKitError(f"--steps must be at least 1, got {args.steps}")
    device = resolve_device(args.device)  # before any work: a missing GPU is one clear line
    batch = read_forward_inputs(path, args.model_dir)
    arrays, steps = forward_steps(args.model_dir, batch, args.steps, device, args.dtype, args.states)
    write_npz(args.out, arrays)
    print(f"forward: {batch.inputs.shape[0]} sequences x {steps} steps -> {args.out}", file=sys.stderr)
    return 0


def add_checkpoint_command(subparsers) -> None:
    """`arc-kit checkpoint download|export`: a published checkpoint fetched and imported; a shippable copy."""
    p = subparsers.add_parser(
        "checkpoint",
        help="checkpoints: `download arc-agi-1|arc-agi-2|hrm-arc-agi-2` (published), `export` (shippable copy)",
        description="The published TRM and HRM checkpoints: download one from the Hugging Face hub and import it.",
    )
    sub = p.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    sub.required = True
    d = sub.add_parser(
        "download",
        help="fetch a published TRM or HRM checkpoint from the Hugging Face hub and import it",
        description="Download the ARC Prize Foundation's re-trained TRM checkpoint (huggingface_hub: HF_ENDPOINT, "
        "HF_TOKEN and `hf auth login` apply), verify size and sha256, and import it with the shipped "
        "puzzle-identifier list. An interrupted transfer resumes when the command is run again.",
    )
    d.add_argument(
        "name",
        metavar="NAME",
        help="arc-agi-1, arc-agi-2 (TRM), hrm-arc-agi-2 (HRM), or a YAML file of the same settings",
    )
    d.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override a setting (repo, revision, endpoint, checkpoint, config, size, sha256, identifiers)",
    )
    d.add_argument(
        "-o",
        "--out",
        metavar="MODEL_DIR",
        help="output checkpoint directory (default: models/trm-NAME, models/hrm-...)",
    )
    d.add_argument("--force", action="store_true", help="replace an existing MODEL_DIR")
    d.add_argument("--keep-download", action="store_true", help="keep the reference files (.MODEL_DIR.download/)")
    d.set_defaults(func=cmd_checkpoint_download)
    e = sub.add_parser(
        "export",
        help="a shippable copy of a checkpoint: network, mean puzzle row, config, MANIFEST.json",
        description="Copy a kit checkpoint without its training state and with its puzzle table replaced by the "
        "table's mean (what test-time training starts new rows from), plus MANIFEST.json with each file's sha256. "
        "Regenerates the shipped starter model: `arc-kit checkpoint export runs/starter-v2 arc_kit/starter --force`.",
    )
    e.add_argument("src", metavar="MODEL_DIR", help="kit checkpoint (e.g. `arc-kit train` output)")
    e.add_argument("dest", metavar="OUT_DIR", help="output folder (built aside and swapped in)")
    e.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR")
    e.set_defaults(func=cmd_checkpoint_export)


def cmd_checkpoint_export(args) -> int:
    from arc_kit.model.starter import export_checkpoint

    manifest = export_checkpoint(Path(args.src), Path(args.dest), force=args.force)
    size = sum(e["bytes"] for e in manifest.values())
    print(f"checkpoint export: {args.src} -> {args.dest}: {len(manifest)} files, {size / 1e6:.2f} MB", file=sys.stderr)
    return 0


def cmd_checkpoint_download(args) -> int:
    spec = load_preset(args.name, args.overrides or [])
    stem = Path(args.name).stem
    out = Path(args.out or (f"models/{stem}" if stem.startswith("hrm") else f"models/trm-{stem}"))
    info = download_checkpoint(spec, out, force=args.force, keep_download=args.keep_download, name=args.name)
    c = info.config
    print(
        f"checkpoint download: {args.name} -> {out}: {c.kind.upper()}, hidden {c.hidden_size}, H_cycles {c.H_cycles}, "
        f"L_cycles {c.L_cycles}, halt_max_steps {c.halt_max_steps}, {len(info.puzzle_names):,} "
        + (
            "numbered puzzle rows (no names: see docs/models.md)" if spec.identifiers == "none" else "named puzzle rows"
        ),
        file=sys.stderr,
    )
    return 0
