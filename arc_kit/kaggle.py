"""Kaggle notebook runtime: find the inputs, size the budget, run `arc-kit run` safely, keep submission.json valid."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Everything the notebook reads from the environment (documented in submission/README.md).
TEST_FILE = "arc-agi_test_challenges.json"
DEFAULT_SLUG = "arc-prize-2025"
DEFAULT_LIMIT_MINUTES = 720.0    # ARC Prize 2025: 12 h for the whole notebook, installs included
DEFAULT_SAFETY_MINUTES = 10.0    # Kaggle blurs run times by up to 10 min; winners kept ~600 s free
DEFAULT_INTERACTIVE_MINUTES = 15.0  # Save & Run All (committed run on the placeholder file) stays short
RUN_CONFIG_FILE = "arc-kit-run.yaml"  # a config shipped in a dataset; used unless ARC_KIT_CONFIG is set
MIN_RUN_MINUTES = 0.25           # below this the job is not started: the fallback is all we can afford


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
    hits = sorted({f.parent for pat in ("*/model.safetensors", "datasets/*/*/model.safetensors",
                                        "*/*/model.safetensors") for f in root.glob(pat)
                   if (f.parent / "config.yaml").is_file()})
    notes = [f"several checkpoints attached, using {hits[0]} (set ARC_KIT_CHECKPOINT_DIR to choose)"] if len(hits) > 1 else []
    return (hits[0] if hits else None), notes


def find_run_config(input_root: str | Path) -> Path | None:
    """A run config shipped in an attached dataset (`bundle --config` puts it in the wheels dataset)."""
    root = Path(input_root)
    hits = sorted(root.glob(f"*/{RUN_CONFIG_FILE}")) + sorted(root.glob(f"datasets/*/*/{RUN_CONFIG_FILE}"))
    return hits[0] if hits else None


def count_test_tasks(test_file: Path | None) -> tuple[int, int]:
    """(tasks, test inputs) in the challenges file, best effort (a broken task counts one input)."""
    try:
        data = json.loads(Path(test_file).read_text())
    except Exception:
        return 0, 0
    if not isinstance(data, dict):
        return 0, 0
    n_inputs = 0
    for task in data.values():
        tests = task.get("test") if isinstance(task, dict) else None
        n_inputs += len(tests) if isinstance(tests, list) and tests else 1
    return len(data), n_inputs


def detect_gpus(timeout: float = 180.0) -> dict:
    """GPU count, names and bf16 support, probed in a child process so the notebook never holds a CUDA
    context (and a hanging driver cannot hang the notebook). bf16 = compute capability >= 8 on every GPU
    (torch's is_bf16_supported() also says yes to emulated bf16 on a T4)."""
    code = ("import json, torch\n"
            "n = torch.cuda.device_count() if torch.cuda.is_available() else 0\n"
            "caps = [torch.cuda.get_device_capability(i) for i in range(n)]\n"
            "names = [torch.cuda.get_device_name(i) for i in range(n)]\n"
            "print(json.dumps({'gpus': n, 'names': names, 'bf16': bool(n) and all(c[0] >= 8 for c in caps)}))\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:
        return {"gpus": 0, "names": [], "bf16": False, "error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------- settings

@dataclass
class NotebookSettings:
    """Everything the notebook decided before starting the job; printed in the first kit cell."""
    t0: float                      # epoch seconds when the notebook's first cell ran
    rerun: bool                    # KAGGLE_IS_COMPETITION_RERUN non-empty: the scored hidden-set run
    slug: str
    input_root: str
    competition_dir: str | None
    test_file: str | None
    n_tasks: int
    n_test_inputs: int
    checkpoint_dir: str | None
    output_dir: str
    config: str                    # path or shipped config name
    limit_minutes: float           # the whole notebook's limit (ARC_KIT_BUDGET_MINUTES)
    safety_minutes: float
    interactive_minutes: float
    gpus: int = 0
    gpu_names: list[str] = field(default_factory=list)
    bf16: bool = False
    overrides: list[str] = field(default_factory=list)  # ARC_KIT_OVERRIDES, appended last
    notes: list[str] = field(default_factory=list)      # warnings to show the user

    def elapsed_minutes(self, now: float | None = None) -> float:
        return ((time.time() if now is None else now) - self.t0) / 60.0

    def job_minutes(self, now: float | None = None) -> float:
        """What the job may use: the limit minus time spent and the safety margin; short when interactive."""
        left = self.limit_minutes - self.elapsed_minutes(now) - self.safety_minutes
        return max(0.0, left if self.rerun else min(left, self.interactive_minutes))


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
        notes.append(f"no {TEST_FILE} found under {input_root}/{slug}, {input_root}/competitions/{slug} "
                     f"or ARC_KIT_COMPETITION_DIR: attach the competition data")
    n_tasks, n_inputs = count_test_tasks(test_file)
    ckpt, ck_notes = find_checkpoint_dir(input_root, _env(env, "ARC_KIT_CHECKPOINT_DIR"))
    notes += ck_notes
    if ckpt is None:
        notes.append("no checkpoint attached: test-time training starts from scratch (expect a low score)")
    hw = detect_gpus() if probe_gpus else {"gpus": 0, "names": [], "bf16": False}
    if hw.get("error"):
        notes.append(f"GPU probe failed ({hw['error']}); running on CPU")
    if not hw["gpus"]:
        notes.append("no GPU: the job runs on CPU and still ends within its budget")
    config = _env(env, "ARC_KIT_CONFIG") or str(find_run_config(input_root) or "") or choose_config(hw["gpus"], hw["bf16"])
    return NotebookSettings(
        t0=t0, rerun=bool(_env(env, "KAGGLE_IS_COMPETITION_RERUN")), slug=slug, input_root=input_root,
        competition_dir=str(comp) if comp else None, test_file=str(test_file) if test_file else None,
        n_tasks=n_tasks, n_test_inputs=n_inputs, checkpoint_dir=str(ckpt) if ckpt else None,
        output_dir=_env(env, "ARC_KIT_OUTPUT_DIR", "/kaggle/working"),
        config=config,
        limit_minutes=_env_float(env, "ARC_KIT_BUDGET_MINUTES", DEFAULT_LIMIT_MINUTES, notes),
        safety_minutes=_env_float(env, "ARC_KIT_SAFETY_MINUTES", DEFAULT_SAFETY_MINUTES, notes),
        interactive_minutes=_env_float(env, "ARC_KIT_INTERACTIVE_MINUTES", DEFAULT_INTERACTIVE_MINUTES, notes),
        gpus=int(hw["gpus"]), gpu_names=list(hw.get("names", [])), bf16=bool(hw["bf16"]),
        overrides=_env(env, "ARC_KIT_OVERRIDES").split(), notes=notes)


def describe(s: NotebookSettings) -> str:
    mode = "competition rerun (full job)" if s.rerun else f"interactive (short job, <= {s.interactive_minutes:g} min)"
    hw = f"{s.gpus} GPU ({', '.join(s.gpu_names)}), bf16 {'yes' if s.bf16 else 'no'}" if s.gpus else "CPU only"
    job = s.job_minutes()
    per_task = f", {60 * job / s.n_tasks:.0f} s per task" if s.n_tasks else ""
    lines = [f"mode:        {mode}",
             f"tasks:       {s.n_tasks} tasks, {s.n_test_inputs} test inputs in {s.test_file}",
             f"checkpoint:  {s.checkpoint_dir or 'none (training from scratch)'}",
             f"config:      {s.config}",
             f"hardware:    {hw}",
             f"budget:      limit {s.limit_minutes:g} min, spent {s.elapsed_minutes():.1f} min, "
             f"safety {s.safety_minutes:g} min -> job {job:.1f} min{per_task}",
             f"output:      {s.output_dir}/submission.json"]
    return "\n".join(lines + [f"WARNING: {n}" for n in s.notes])


# ---------------------------------------------------------------- submission checks

def _is_grid(g) -> bool:
    return (isinstance(g, list) and 1 <= len(g) <= 30 and all(isinstance(r, list) and r for r in g)
            and len({len(r) for r in g}) == 1 and len(g[0]) <= 30
            and all(type(v) is int and 0 <= v <= 9 for r in g for v in r))


def expected_inputs(test_file: str | Path) -> dict[str, int]:
    """task id -> number of test inputs the scorer expects (a broken task: its list length, or 1)."""
    data = json.loads(Path(test_file).read_text())
    out = {}
    for tid, task in data.items():
        tests = task.get("test") if isinstance(task, dict) else None
        out[str(tid)] = len(tests) if isinstance(tests, list) and tests else 1
    return out


def submission_problems(path: str | Path, test_file: str | Path) -> list[str]:
    """What makes `path` unacceptable for `test_file` (empty list: valid). Standard library only."""
    try:
        sub = json.loads(Path(path).read_text())
    except Exception as e:
        return [f"{path}: unreadable: {type(e).__name__}"]
    try:
        expected = expected_inputs(test_file)
    except Exception as e:
        return [f"{test_file}: unreadable: {type(e).__name__}"]
    if not isinstance(sub, dict):
        return [f"{path}: not a JSON object"]
    problems = [f"{path}: task {t}: missing" for t in expected if t not in sub]
    problems += [f"{path}: task {t}: not in the test file" for t in sub if t not in expected]
    for t, n in expected.items():
        v = sub.get(t)
        if t in sub and (not isinstance(v, list) or len(v) != n):
            problems.append(f"{path}: task {t}: expected {n} test outputs")
            continue
        for i, att in enumerate(v or []):
            if not (isinstance(att, dict) and _is_grid(att.get("attempt_1")) and _is_grid(att.get("attempt_2"))):
                problems.append(f"{path}: task {t}: test {i}: attempt_1/attempt_2 must be 1-30 x 1-30 grids of 0-9")
    return problems


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# ---------------------------------------------------------------- the job

@dataclass
class JobResult:
    started: bool = False
    returncode: int | None = None
    timed_out: bool = False
    minutes: float = 0.0
    used_run_submission: bool = False   # submission.json came from the job (else: the fallback)
    syncs: int = 0                      # times a better submission was copied in while the job ran
    problems: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def job_overrides(s: NotebookSettings, job_minutes: float) -> list[str]:
    """`key=value` overrides for `arc-kit run`: budget, devices and dtype from what the notebook found."""
    margin = 0.5
    try:  # the config's own margin, capped so it stays below a small budget (the config check demands it)
        from .run_config import load_run_config
        margin = load_run_config(s.config).budget.safety_margin_minutes
    except Exception:
        pass
    ov = [f"budget.total_minutes={job_minutes:.3f}",
          f"budget.safety_margin_minutes={min(margin, 0.25 * job_minutes):.3f}"]
    if s.gpus:
        ov += ["runtime.device=cuda", f"runtime.num_processes={s.gpus}"]
        if not s.bf16:
            ov.append("runtime.precision=float32")   # T4/P100: no bfloat16
    else:
        ov += ["runtime.device=cpu", "runtime.num_processes=1", "runtime.precision=float32"]
    return ov + list(s.overrides)


def job_command(s: NotebookSettings, job_minutes: float) -> list[str]:
    cmd = [sys.executable, "-m", "arc_kit.cli", "run", "--config", s.config, "--tasks", str(s.test_file),
           "--out", str(Path(s.output_dir) / "arc-kit-run")]
    if s.checkpoint_dir:
        cmd += ["--checkpoint", s.checkpoint_dir]
    return cmd + job_overrides(s, job_minutes)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_job(s: NotebookSettings, sync_seconds: float = 30.0, grace_seconds: float | None = None,
            echo=print) -> JobResult:
    """Run `arc-kit run` as a child process group with a hard timeout; relay its output; every
    `sync_seconds` copy its submission.json over ours when valid. Never raises."""
    res = JobResult()
    try:
        if not s.test_file:
            res.problems.append("no test file: kept the fallback submission")
            return res
        minutes = s.job_minutes()
        if minutes < MIN_RUN_MINUTES:
            res.problems.append(f"only {minutes:.2f} min left for the job: kept the fallback submission")
            return res
        out = Path(s.output_dir)
        run_sub = out / "arc-kit-run" / "submission.json"
        final = out / "submission.json"
        # The child's own watchdog ends it at `minutes`; we kill at minutes + grace (half the safety margin,
        # at most 2 min) so a hung child cannot push the notebook past its limit.
        grace = grace_seconds if grace_seconds is not None else min(120.0, 30.0 * s.safety_minutes)
        deadline = time.time() + 60.0 * minutes + grace
        res.command = job_command(s, minutes)
        echo("$ " + " ".join(res.command))
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "arc-kit-run.log", "a", encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t_start = time.time()
        try:
            proc = subprocess.Popen(res.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", env=env, start_new_session=True)
        except BaseException:
            log.close()
            raise
        res.started = True

        def relay():  # a thread, so a silent child cannot block the timeout below
            for line in proc.stdout:
                log.write(line)
                log.flush()
                echo(line.rstrip("\n"))
        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        last_sync = 0.0
        while proc.poll() is None:
            if time.time() > deadline:
                res.timed_out = True
                echo("WARNING: arc-kit run passed its deadline: stopping it")
                _kill_group(proc, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    _kill_group(proc, signal.SIGKILL)
                    proc.wait(10)
                break
            if time.time() - last_sync > sync_seconds:
                last_sync = time.time()
                res.syncs += _sync(run_sub, final, s.test_file)
            time.sleep(0.5)
        _kill_group(proc, signal.SIGKILL)  # stray grandchildren of a finished job
        reader.join(5)
        log.close()
        res.returncode = proc.returncode
        res.minutes = (time.time() - t_start) / 60.0
        res.syncs += _sync(run_sub, final, s.test_file)
    except Exception as e:
        res.problems.append(f"job failed to run: {type(e).__name__}: {e}")
    return res


def _sync(run_sub: Path, final: Path, test_file) -> int:
    """Copy the job's submission over ours when it is newer and valid; 1 when copied."""
    try:
        if not run_sub.is_file() or (final.is_file() and run_sub.stat().st_mtime <= final.stat().st_mtime):
            return 0
        if submission_problems(run_sub, test_file):
            return 0
        _atomic_copy(run_sub, final)
        return 1
    except Exception:
        return 0


def finish(s: NotebookSettings, fallback: dict, job: JobResult | None = None) -> dict:
    """Last word on submission.json: keep it if valid, else restore the fallback. Returns a summary."""
    final = Path(s.output_dir) / "submission.json"
    summary = {"submission": str(final), "source": "fallback", "restored_fallback": False,
               "elapsed_minutes": round(s.elapsed_minutes(), 2),
               "limit_minutes": s.limit_minutes, "tasks": s.n_tasks, "problems": []}
    try:
        problems = submission_problems(final, s.test_file) if s.test_file else ["no test file"]
        if problems and s.test_file:
            summary["problems"] = problems[:5]
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(".submission.json.tmp")
            tmp.write_text(json.dumps(fallback))
            os.replace(tmp, final)
            summary["restored_fallback"] = True
        elif job is not None and job.syncs:
            summary["source"] = "arc-kit run"
        if s.test_file and not summary["restored_fallback"]:
            sub = json.loads(final.read_text())
            summary["answered_by_model"] = sum(a != fb for t in fallback for a, fb in zip(sub.get(t, []), fallback[t]))
            summary["test_inputs"] = sum(len(v) for v in fallback.values())
    except Exception as e:
        summary["problems"].append(f"{type(e).__name__}: {e}")
    if job is not None:
        summary["job"] = {k: v for k, v in asdict(job).items() if k != "command"}
    summary["elapsed_minutes"] = round(s.elapsed_minutes(), 2)
    return summary


def format_summary(summary: dict) -> str:
    job = summary.get("job") or {}
    lines = [f"submission.json: {summary['submission']} (from {summary['source']}"
             f"{', fallback restored' if summary['restored_fallback'] else ''})",
             f"answered by the model: {summary.get('answered_by_model', 0)} of {summary.get('test_inputs', '?')} "
             f"test inputs ({summary['tasks']} tasks); the rest keep fallback attempts",
             f"time: {summary['elapsed_minutes']:.1f} of {summary['limit_minutes']:g} min"]
    if job:
        lines.append(f"job: started {job.get('started')}, exit {job.get('returncode')}, "
                     f"timed out {job.get('timed_out')}, {job.get('minutes', 0):.1f} min")
    lines += [f"problem: {p}" for p in summary["problems"] + job.get("problems", [])]
    return "\n".join(lines)


# ---------------------------------------------------------------- the notebook file

def notebook_from_source(text: str) -> dict:
    """An nbformat-4 notebook from `# %%` / `# %% [markdown]` cells (submission/notebook.py)."""
    cells, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
        if kind and body:
            src = [l + "\n" for l in body.split("\n")]
            src[-1] = src[-1].rstrip("\n")
            cell = {"cell_type": kind, "id": f"cell-{len(cells)}", "metadata": {}, "source": src}
            if kind == "code":
                cell.update(execution_count=None, outputs=[])
            cells.append(cell)

    for line in text.split("\n"):
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                         "name": "python3"},
                                          "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def notebook_json(source: str | Path) -> str:
    return json.dumps(notebook_from_source(Path(source).read_text(encoding="utf-8")), indent=1,
                      ensure_ascii=False) + "\n"


def write_notebook(source: str | Path, target: str | Path) -> bool:
    """Regenerate the .ipynb from its text source; True when the file changed."""
    text = notebook_json(source)
    target = Path(target)
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        return False
    target.write_text(text, encoding="utf-8")
    return True
