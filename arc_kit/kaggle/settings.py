"""Kaggle notebook settings: find the mounted inputs, probe the GPUs, size the job's budget."""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arc_kit.data import load_tasks
from arc_kit.submission import expected_test_counts


@dataclass(frozen=True)
class Competition:
    """One Kaggle ARC competition: where its data is mounted and what its scored rerun gives."""

    slug: str
    data_dir: str  # the folder holding arc-agi_test_challenges.json in the notebook
    rerun_tasks: int  # hidden tasks in the scored rerun
    machine_shape: str  # accelerator of the rerun (kaggle_meta.KNOWN_SHAPES)
    limit_minutes: float  # the whole notebook's limit, installs included


# Known competitions by slug. Next year's competition is one new line here plus DEFAULT_SLUG; the notebook
# (submission/notebook.py), submission/kernel-metadata.json and configs/kaggle-arc-agi-2.yaml repeat the
# default slug and path (they cannot import the kit) and tests/test_bad_inputs.py checks they agree.
COMPETITIONS = {
    c.slug: c
    for c in (
        # 2026, ARC-AGI-2 track: notebooks see competition data under /kaggle/input/competitions/<slug>/
        Competition(
            "arc-prize-2026-arc-agi-2", "/kaggle/input/competitions/arc-prize-2026-arc-agi-2", 240, "NvidiaL4", 720.0
        ),
        Competition("arc-prize-2025", "/kaggle/input/arc-prize-2025", 240, "NvidiaL4", 720.0),
        Competition("arc-prize-2024", "/kaggle/input/arc-prize-2024", 100, "NvidiaTeslaT4", 720.0),
    )
}
DEFAULT_SLUG = "arc-prize-2026-arc-agi-2"

# Everything the notebook reads from the environment (documented in docs/kaggle.md, "Settings").
TEST_FILE = "arc-agi_test_challenges.json"
DEFAULT_LIMIT_MINUTES = COMPETITIONS[DEFAULT_SLUG].limit_minutes  # 12 h for the whole notebook, installs included
DEFAULT_SAFETY_MINUTES = 10.0  # Kaggle blurs run times by up to 10 min; winners kept ~600 s free
DEFAULT_INTERACTIVE_MINUTES = 15.0  # Save & Run All (committed run on the placeholder file) stays short
RUN_CONFIG_FILE = "arc-kit-run.yaml"  # a config shipped in a dataset; used unless ARC_KIT_CONFIG is set
MIN_RUN_MINUTES = 0.25  # below this the job is not started: the fallback is all we can afford


def _env(env, name: str, default: str = "") -> str:
    return (env.get(name) or default).strip()


def _env_float(env, name: str, default: float, notes: list[str]) -> float:
    raw = _env(env, name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        notes.append(f"{name}={raw!r} is not a number; using {default}")
        return default


# ---------------------------------------------------------------- locating inputs


def find_competition_dir(slug: str, input_root: str | Path, override: str = "") -> Path | None:
    """The folder holding arc-agi_test_challenges.json: override, then both Kaggle layouts, then any mount."""
    if override:  # an explicit override that does not hold the file is not silently replaced
        return Path(override) if (Path(override) / TEST_FILE).is_file() else None
    root = Path(input_root)
    for c in (root / slug, root / "competitions" / slug):
        if (c / TEST_FILE).is_file():
            return c
    hits = sorted(root.glob(f"*/{TEST_FILE}")) + sorted(root.glob(f"competitions/*/{TEST_FILE}"))
    return hits[0].parent if hits else None


def find_checkpoint_dir(input_root: str | Path, override: str = "") -> tuple[Path | None, list[str]]:
    """An attached kit checkpoint (model.safetensors + config.yaml) under /kaggle/input/<slug>/ or
    /kaggle/input/datasets/<owner>/<slug>/ (2026 layout); the override wins. Returns (dir, notes)."""
    if override:
        p = Path(override)
        ok = (p / "model.safetensors").is_file()
        return (p if ok else None), ([] if ok else [f"ARC_KIT_CHECKPOINT_DIR={override}: no model.safetensors there"])
    root = Path(input_root)
    hits = sorted(
        {
            f.parent
            for pat in ("*/model.safetensors", "datasets/*/*/model.safetensors", "*/*/model.safetensors")
            for f in root.glob(pat)
            if (f.parent / "config.yaml").is_file()
        }
    )
    notes = (
        [f"several checkpoints attached, using {hits[0]} (set ARC_KIT_CHECKPOINT_DIR to choose)"]
        if len(hits) > 1
        else []
    )
    return (hits[0] if hits else None), notes


def find_run_config(input_root: str | Path) -> Path | None:
    """A run config shipped in an attached dataset (`bundle --config` puts it in the wheels dataset)."""
    root = Path(input_root)
    hits = sorted(root.glob(f"*/{RUN_CONFIG_FILE}")) + sorted(root.glob(f"datasets/*/*/{RUN_CONFIG_FILE}"))
    return hits[0] if hits else None


def count_test_tasks(test_file: Path | None) -> tuple[int, int]:
    """(tasks, test inputs) in the challenges file, best effort (a broken task counts its test list, at least 1)."""
    if test_file is None:
        return 0, 0
    try:
        counts = expected_test_counts(load_tasks(test_file, lenient=True))
    except Exception:
        return 0, 0
    return len(counts), sum(counts.values())


def detect_gpus(timeout: float = 180.0) -> dict[str, Any]:
    """GPU count, names and bf16 support, probed in a child process so the notebook never holds a CUDA
    context (and a hanging driver cannot hang the notebook). bf16 = compute capability >= 8 on every GPU
    (torch's is_bf16_supported() also says yes to emulated bf16 on a T4)."""
    code = (
        "import json, torch\n"
        "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
        "caps = [torch.cuda.get_device_capability(i) for i in range(n)]\n"
        "names = [torch.cuda.get_device_name(i) for i in range(n)]\n"
        "print(json.dumps({'gpus': n, 'names': names, 'bf16': bool(n) and all(c[0] >= 8 for c in caps)}))\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"gpus": 0, "names": [], "bf16": False, "error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------- settings


@dataclass
class NotebookSettings:
    """Everything the notebook decided before starting the job; printed in the first kit cell."""

    t0: float  # epoch seconds when the notebook's first cell ran
    rerun: bool  # KAGGLE_IS_COMPETITION_RERUN non-empty: the scored hidden-set run
    slug: str
    input_root: str
    competition_dir: str | None
    test_file: str | None
    n_tasks: int
    n_test_inputs: int
    checkpoint_dir: str | None  # an attached checkpoint: the run gets it as --checkpoint
    output_dir: str
    config: str  # path or shipped config name
    limit_minutes: float  # the whole notebook's limit (ARC_KIT_BUDGET_MINUTES)
    safety_minutes: float
    interactive_minutes: float
    gpus: int = 0
    gpu_names: list[str] = field(default_factory=list)
    bf16: bool = False
    overrides: list[str] = field(default_factory=list)  # ARC_KIT_OVERRIDES, appended last
    notes: list[str] = field(default_factory=list)  # warnings to show the user
    config_checkpoint: str | None = None  # the config's model.checkpoint (e.g. starter), used when none is attached

    def elapsed_minutes(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.t0) / 60.0

    def job_minutes(self, now: float | None = None) -> float:
        """What the job may use: the limit minus time spent and the safety margin; short when interactive."""
        left = self.limit_minutes - self.elapsed_minutes(now) - self.safety_minutes
        return max(0.0, left if self.rerun else min(left, self.interactive_minutes))


def checkpoint_of_config(config: str, overrides: list[str]) -> str | None:
    """The run config's model.checkpoint (e.g. the shipped starter), best effort: a broken config is the run's
    to report, with its own one-line error."""
    from arc_kit.run.config import load_run_config

    try:
        return load_run_config(config, overrides).model.checkpoint
    except Exception:
        return None


def choose_config(gpus: int, bf16: bool) -> str:
    """Shipped preset for the hardware: L4-class (bf16) or T4-class (no bf16); CPU runs the T4 preset in fp32."""
    return "kaggle-l4" if gpus and bf16 else "kaggle-t4"


def resolve_settings(t0: float | None = None, env=None, probe_gpus: bool = True) -> NotebookSettings:
    """Read the environment (ARC_KIT_*, KAGGLE_IS_COMPETITION_RERUN) and the mounted inputs. Never raises
    for a missing input: what is missing becomes a note and the notebook falls back."""
    env = os.environ if env is None else env
    notes: list[str] = []
    t0 = float(t0) if t0 is not None else float(_env(env, "ARC_KIT_T0") or time.time())
    input_root = _env(env, "ARC_KIT_INPUT_ROOT", "/kaggle/input")
    slug = _env(env, "ARC_KIT_COMPETITION", DEFAULT_SLUG)
    comp = find_competition_dir(slug, input_root, _env(env, "ARC_KIT_COMPETITION_DIR"))
    test_file = comp / TEST_FILE if comp else None
    if comp is None:
        notes.append(
            f"no {TEST_FILE} found under {input_root}/{slug}, {input_root}/competitions/{slug} "
            f"or ARC_KIT_COMPETITION_DIR: attach the competition data"
        )
    n_tasks, n_inputs = count_test_tasks(test_file)
    ckpt, ck_notes = find_checkpoint_dir(input_root, _env(env, "ARC_KIT_CHECKPOINT_DIR"))
    notes += ck_notes
    hw: dict[str, Any] = detect_gpus() if probe_gpus else {"gpus": 0, "names": [], "bf16": False}
    if hw.get("error"):
        notes.append(f"GPU probe failed ({hw['error']}); running on CPU")
    if not hw["gpus"]:
        notes.append("no GPU: the job runs on CPU and still ends within its budget")
    config = (
        _env(env, "ARC_KIT_CONFIG") or str(find_run_config(input_root) or "") or choose_config(hw["gpus"], hw["bf16"])
    )
    overrides = _env(env, "ARC_KIT_OVERRIDES").split()
    named = checkpoint_of_config(config, overrides)
    if ckpt is None and not named:
        notes.append("no checkpoint attached: test-time training starts from scratch (expect a low score)")
    return NotebookSettings(
        t0=t0,
        rerun=bool(_env(env, "KAGGLE_IS_COMPETITION_RERUN")),
        slug=slug,
        input_root=input_root,
        competition_dir=str(comp) if comp else None,
        test_file=str(test_file) if test_file else None,
        n_tasks=n_tasks,
        n_test_inputs=n_inputs,
        checkpoint_dir=str(ckpt) if ckpt else None,
        output_dir=_env(env, "ARC_KIT_OUTPUT_DIR", "/kaggle/working"),
        config=config,
        limit_minutes=_env_float(env, "ARC_KIT_BUDGET_MINUTES", DEFAULT_LIMIT_MINUTES, notes),
        safety_minutes=_env_float(env, "ARC_KIT_SAFETY_MINUTES", DEFAULT_SAFETY_MINUTES, notes),
        interactive_minutes=_env_float(env, "ARC_KIT_INTERACTIVE_MINUTES", DEFAULT_INTERACTIVE_MINUTES, notes),
        gpus=int(hw["gpus"]),
        gpu_names=list(hw.get("names", [])),
        bf16=bool(hw["bf16"]),
        overrides=overrides,
        notes=notes,
        config_checkpoint=named,
    )


def describe(s: NotebookSettings) -> str:
    mode = "competition rerun (full job)" if s.rerun else f"interactive (short job, <= {s.interactive_minutes:g} min)"
    hw = f"{s.gpus} GPU ({', '.join(s.gpu_names)}), bf16 {'yes' if s.bf16 else 'no'}" if s.gpus else "CPU only"
    job = s.job_minutes()
    per_task = f", {60 * job / s.n_tasks:.0f} s per task" if s.n_tasks else ""
    named = f"{s.config_checkpoint} (the config's model.checkpoint)" if s.config_checkpoint else None
    model = s.checkpoint_dir or named or "none (training from scratch)"
    lines = [
        f"mode:        {mode}",
        f"tasks:       {s.n_tasks} tasks, {s.n_test_inputs} test inputs in {s.test_file}",
        f"checkpoint:  {model}",
        f"config:      {s.config}",
        f"hardware:    {hw}",
        f"budget:      limit {s.limit_minutes:g} min, spent {s.elapsed_minutes():.1f} min, "
        f"safety {s.safety_minutes:g} min -> job {job:.1f} min{per_task}",
        f"output:      {s.output_dir}/submission.json",
    ]
    return "\n".join(lines + [f"WARNING: {n}" for n in s.notes])
