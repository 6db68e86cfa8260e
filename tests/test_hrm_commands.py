"""HRM through the commands: `train` (and resume), `run` from scratch and from HRM checkpoints (named and unnamed
rows), `predict`, `revote`; the shipped cpu-demo-hrm config."""

import json
from pathlib import Path

import pytest
import yaml
from helpers import assert_valid_submission, run_cli, simple_task, tiny_config, tiny_train_args, write_task_dir

from arc_kit.base.config import load_config
from arc_kit.cli.main import main
from arc_kit.model.checkpoint import load_checkpoint
from arc_kit.model.hrm import HRM
from arc_kit.run.config import RunConfig

REF = Path(__file__).resolve().parent / "fixtures" / "hrm-reference"
HRM_ARCH = {"model.arch.kind": "hrm", "model.arch.H_layers": 1, "model.arch.H_cycles": 2}


def test_cpu_demo_hrm_config():
    """The shipped HRM demo: cpu-demo's tasks, recipe and budget, an HRM of the same size and cost per step."""
    hrm, trm = load_config(RunConfig, "cpu-demo-hrm"), load_config(RunConfig, "cpu-demo")
    a, b = hrm.model.arch, trm.model.arch
    assert (a.kind, a.H_stack_layers, a.L_layers, b.kind, b.L_layers) == ("hrm", 1, 1, "trm", 2)
    assert a.H_cycles * (a.L_cycles * a.L_layers + a.H_stack_layers) == b.H_cycles * (b.L_cycles + 1) * b.L_layers
    assert (hrm.tasks, hrm.ttt, hrm.inference, hrm.budget) == (trm.tasks, trm.ttt, trm.inference, trm.budget)


def test_cli_train_hrm_writes_checkpoint_and_resumes(tmp_path):
    tasks = write_task_dir(tmp_path / "tasks", {"x1": simple_task(), "x2": simple_task(colour=3)})
    out = tmp_path / "run"
    # the TRM recipe pins no_ACT_continue true; HRM's reference learns q_continue
    tiny = tiny_train_args(kind="hrm", H_layers=1, H_cycles=2, no_ACT_continue="false")
    argv = ["train", "--config", "pretrain-arc-agi-1", "--tasks", str(tasks), "--out", str(out)]
    assert main(argv + tiny + ["train.max_steps=3"]) == 0
    model, info = load_checkpoint(out)
    assert isinstance(model, HRM) and info.config.kind == "hrm" and info.config.no_ACT_continue is False
    assert main(argv + ["--resume"] + tiny + ["train.max_steps=5"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5]
    assert all("q_continue_loss" in x for x in lines)  # the bootstrapped Q-learning term is trained


def _log(out: Path) -> str:
    return (out / "run.log").read_text()


@pytest.mark.e2e
def test_hrm_run_predict_revote_and_ttt_from_hrm_checkpoints(tmp_path):
    tasks = {f"t{i}": simple_task(n_train=2, n_test=1 + (i == 1), size=3, colour=1 + i) for i in range(4)}
    tasks_dir = write_task_dir(tmp_path / "tasks", tasks)
    # 1. test-time training of a fresh HRM
    out = tmp_path / "scratch"
    res = run_cli(tiny_config(tasks_dir, **HRM_ARCH, **{"ttt.max_steps": 60}), out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out, tasks_dir)
    state = json.loads((out / "state.json").read_text())["stages"]
    assert state["train"]["status"] == "done" and state["train"]["steps"] > 0
    model, info = load_checkpoint(out / "ttt" / "model")
    assert isinstance(model, HRM) and info.config.H_layers == 1

    # 2. predict with the trained HRM, then revote its predictions
    assert main(["predict", str(out / "ttt" / "model"), "--tasks", str(tasks_dir), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "predictions.jsonl").read_text().strip()
    argv = ["revote", str(tmp_path / "p" / "predictions.jsonl"), "--tasks", str(tasks_dir)]
    assert main(argv + ["--configs", "reference", "--output", str(tmp_path / "rv")]) == 0
    assert_valid_submission(tmp_path / "rv" / "reference", tasks_dir)

    # 3. test-time training from that HRM checkpoint: its rows are named, every task starts from its own row
    out2 = tmp_path / "from-ckpt"
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 10, "model.checkpoint": str(out / "ttt" / "model")})
    res = run_cli(cfg, out2)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out2, tasks_dir)
    assert isinstance(load_checkpoint(out2 / "ttt" / "model")[0], HRM)
    assert "0 from the mean" in _log(out2)

    # 4. from an imported HRM whose rows have no names: the network and the table's mean row only
    ref = tmp_path / "ref-hrm"
    assert (
        main(["import-reference", str(REF / "step_0"), "--config", str(REF / "all_config.yaml"), "-o", str(ref)]) == 0
    )
    out3 = tmp_path / "from-unnamed"
    cfg = tiny_config(tasks_dir, **{"ttt.max_steps": 3, "inference.views": 1, "model.checkpoint": str(ref)})
    res = run_cli(cfg, out3)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_valid_submission(out3, tasks_dir)
    assert (out3 / "submission.json").is_file()  # TTT from unnamed rows completes (every row starts as a new one)


def test_kaggle_bundle_ships_an_hrm_checkpoint_and_config(tmp_path):
    """`kaggle bundle` of an HRM checkpoint (its puzzle table stripped to the mean row, what TTT starts from)
    with the HRM run config: the shipped checkpoint is still an HRM, and the config the notebook runs says hrm."""
    import torch

    from arc_kit.kaggle.bundle import bundle
    from arc_kit.kaggle.meta import BundleNames
    from arc_kit.kaggle.settings import RUN_CONFIG_FILE
    from arc_kit.model.checkpoint import load_puzzle_rows
    from arc_kit.run.config import load_run_config

    ref = tmp_path / "ref-hrm"
    assert (
        main(["import-reference", str(REF / "step_0"), "--config", str(REF / "all_config.yaml"), "-o", str(ref)]) == 0
    )
    wheel = tmp_path / "arc_kit-0.0.1-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    out = tmp_path / "b"
    names = BundleNames(owner="alice")
    kw = dict(download=False, kit_wheel=wheel, packages=(), log=lambda m: None)
    bundle(out, names, checkpoint=ref, strip_puzzles=True, config="cpu-demo-hrm", **kw)
    model, info = load_checkpoint(out / "checkpoint")
    assert isinstance(model, HRM) and len(info.puzzle_names) == 1
    assert torch.allclose(load_puzzle_rows(out / "checkpoint")[0], load_puzzle_rows(ref).mean(0), atol=1e-6)
    assert load_run_config(out / "wheels" / RUN_CONFIG_FILE).model.arch.kind == "hrm"


@pytest.mark.e2e
def test_kaggle_simulate_runs_the_notebook_with_an_hrm(tmp_path, capsys):
    from test_notebook import TINY_CONFIG

    config = tmp_path / "tiny-hrm.yaml"
    text = TINY_CONFIG % {"steps": 10, "views": 2}
    config.write_text(text.replace("arch: {hidden_size", "arch: {kind: hrm, H_layers: 1, hidden_size"))
    argv = ["kaggle", "simulate", "--tasks", "3", "--budget-minutes", "0.8", "--config", str(config)]
    assert main(argv + ["--out", str(tmp_path / "sim"), "--gpu-throughput", "1000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["submission_valid"] and report["tasks"] == 3 and report["local_train_seq_per_s"] > 0
    ran = yaml.safe_load((tmp_path / "sim" / "working" / "arc-kit-run" / "config.yaml").read_text())
    assert ran["model"]["arch"]["kind"] == "hrm"  # the notebook's run trained an HRM
