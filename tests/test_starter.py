"""The shipped starter model: its recipe reads no evaluation split, it loads intact, `--checkpoint starter`
resolves to it (an existing path wins), exports strip the public rows, and test-time training starts from it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import assert_valid_submission, run_cli, simple_task, tiny_config, write_task_dir

from arc_kit.base.config import load_config
from arc_kit.base.errors import ArcKitError
from arc_kit.data import load_tasks
from arc_kit.model import starter
from arc_kit.model.checkpoint import load_checkpoint, read_checkpoint_info, table_mean
from arc_kit.model.config import PretrainConfig
from arc_kit.model.dataset import load_train_data
from arc_kit.model.starter import export_checkpoint, resolve_checkpoint, starter_dir, verify_manifest
from arc_kit.run.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_starter_recipe_reads_no_evaluation_split():
    cfg = load_config(PretrainConfig, "pretrain-starter")
    sources = list(cfg.data.sources) + list(cfg.data.demo_sources)
    assert sources and all(s == "arc-agi-1/training" for s in sources), sources
    assert cfg.data.max_size >= 12 and cfg.data.canvas > cfg.data.max_size
    assert cfg.model.positions == "coords"  # runs on any canvas up to 30x30
    data = load_train_data(cfg.data)
    trained = {n.split("|||")[0] for n in data.puzzle_names[1:]}
    evaluation = set(load_tasks("arc-agi-1/evaluation").tasks)
    assert trained and not trained & evaluation
    assert len(trained) == 220  # the ARC-AGI-1 training tasks whose grids all fit 12x12


def test_the_v2_recipe_is_the_ttt_recipe_on_crops_and_reads_no_evaluation_split(tmp_path):
    cfg = load_config(PretrainConfig, "pretrain-starter-v2")
    assert cfg.data.sources == ["arc-agi-1/training"] and cfg.data.demo_sources == []
    assert cfg.model.halt_max_steps == load_run_config("cpu-demo").model.halt_max_steps == 1
    assert cfg.data.crops and cfg.model.positions == "coords"
    # ConceptARC comes as a Kaggle-style challenges file (solutions beside) given on the command line
    concept = {"Concept1": simple_task(size=4, colour=3), "Concept2": simple_task(size=13, colour=4)}
    challenges = tmp_path / "arc-agi_concept_challenges.json"
    challenges.write_text(
        json.dumps(
            {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in concept.items()}
        )
    )
    solutions = {k: [p["output"] for p in t["test"]] for k, t in concept.items()}
    (tmp_path / "arc-agi_concept_solutions.json").write_text(json.dumps(solutions))
    cfg = load_config(PretrainConfig, "pretrain-starter-v2", [f"data.sources=[arc-agi-1/training,{challenges}]"])
    data = load_train_data(cfg.data)
    trained = {n.split("|||")[0] for n in data.puzzle_names[1:]}
    evaluation = set(load_tasks("arc-agi-1/evaluation").tasks)
    assert not trained & evaluation
    assert "Concept1" in trained and "Concept2" not in trained  # 13x13 grids do not fit max_size 12
    assert len(trained) == 221  # the 220 ARC-AGI-1 training tasks that fit 12x12, plus Concept1


def test_the_shipped_starter_loads_with_its_documented_shape_and_hash():
    d = resolve_checkpoint("starter")
    assert d == starter_dir() and d.is_dir()
    assert verify_manifest(d) == []
    model, _ = load_checkpoint(d)
    c = model.config
    assert (c.hidden_size, c.num_heads, c.L_layers, c.H_cycles, c.L_cycles) == (64, 4, 2, 1, 2)
    assert c.positions == "coords" and c.puzzle_emb_ndim == 64 and c.num_puzzle_identifiers == 1
    assert read_checkpoint_info(d).puzzle_names == ["<blank>"]  # no public task's row ships
    # the cpu-demo architecture: a run from the starter changes the starting weights and runs on crops
    demo = load_run_config("cpu-demo").model.arch
    for key in ("hidden_size", "num_heads", "L_layers", "H_cycles", "L_cycles", "expansion", "puzzle_emb_ndim"):
        assert getattr(demo, key) == getattr(c, key), key
    sha = json.loads((d / starter.MANIFEST_FILE).read_text())["model.safetensors"]["sha256"]
    assert sha in (ROOT / "README.md").read_text(), "README's 'Pretrained models' must state the shipped hash"
    # v2: the test-time recipe (one step, crops), pretrained on no evaluation split; cpu-demo starts from it
    assert c.halt_max_steps == 1 and c.crops and c.crop_margin == 0
    recipe = yaml.safe_load((d / "train.yaml").read_text())["data"]
    assert recipe["sources"][0] == "arc-agi-1/training" and recipe["canvas"] == "crop"
    assert not any("evaluation" in s or "arc-agi-2" in s for s in recipe["sources"] + recipe["demo_sources"])
    assert load_run_config("cpu-demo").model.checkpoint == "starter"


def test_an_existing_path_named_starter_wins_and_a_missing_model_names_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "starter").mkdir()
    assert resolve_checkpoint("starter") == Path("starter")
    (tmp_path / "starter").rmdir()
    monkeypatch.setattr(starter, "starter_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(ArcKitError) as e:
        resolve_checkpoint("starter")
    assert str(tmp_path / "starter") in str(e.value) and str(tmp_path / "nowhere") in str(e.value)
    assert resolve_checkpoint("models/other") == Path("models/other")  # other names are plain paths


def _train(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3 + i, colour=1 + i) for i in range(3)})
    cmd = [sys.executable, "-m", "arc_kit.cli", "train", "--config", "pretrain-starter", "--out", str(out)]
    over = [f"data.sources=[{tasks}]", "data.augmentations=2", "train.max_steps=3", "train.global_batch_size=8"]
    return subprocess.run([*cmd, *over, *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.e2e
def test_train_with_the_starter_recipe_writes_the_shipped_layout_and_export_strips_it(tmp_path):
    r = _train(tmp_path, tmp_path / "ck", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    ck = tmp_path / "ck"
    full, _ = load_checkpoint(ck)
    table = full.puzzle_emb.weights.detach().double()
    assert table.shape[0] == 1 + 3 * 3  # <blank> + (identity + 2 augmentations) x 3 tasks

    manifest = export_checkpoint(ck, tmp_path / "shipped")
    shipped = tmp_path / "shipped"
    assert set(manifest) | {starter.MANIFEST_FILE} == {p.name for p in shipped.iterdir()}
    assert {p.name for p in shipped.iterdir()} == {p.name for p in starter_dir().iterdir()}  # the same layout
    model, _ = load_checkpoint(shipped)
    assert read_checkpoint_info(shipped).puzzle_names == ["<blank>"]
    # the one row left is what new test-time rows start from: the mean of the full table
    assert torch.allclose(model.puzzle_emb.weights.double()[0], table.mean(0), atol=1e-6)
    assert torch.allclose(table_mean(shipped).double(), table.mean(0), atol=1e-6)
    ship_net = {k: v for k, v in model.state_dict().items() if "puzzle_emb" not in k}
    for k, v in full.state_dict().items():
        if "puzzle_emb" not in k:
            assert torch.equal(v, ship_net[k]), k
    assert verify_manifest(shipped) == []
    blob = bytearray((shipped / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (shipped / "model.safetensors").write_bytes(bytes(blob))
    assert verify_manifest(shipped) == ["model.safetensors"]

    again = subprocess.run(
        [sys.executable, "-m", "arc_kit.cli", "checkpoint", "export", str(ck), str(shipped)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr


@pytest.mark.e2e
def test_test_time_training_from_the_starter_on_two_tiny_tasks(tmp_path):
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3, colour=2 + i) for i in range(2)})
    cfg = tiny_config(tasks, **{"ttt.max_steps": 6, "ttt.augmentations": 1, "inference.views": 2})
    out = tmp_path / "run"
    r = run_cli(cfg, out, "--checkpoint", "starter")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_valid_submission(out, tasks)
    state = json.loads((out / "state.json").read_text())["stages"]
    assert state["train"]["status"] == "done" and state["train"]["steps"] > 0
    assert state["infer"]["status"] == "done" and state["infer"]["written"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["checkpoint"] == str(starter_dir())  # the stages got the resolved directory
    # the crop-trained starter keeps its crops whatever the run's canvas (tiny_config: task), and says so
    trained = read_checkpoint_info(out / "ttt" / "model").config
    assert trained.crops and trained.crop_margin == 0 and trained.hidden_size == 64
    assert state["train"]["canvas"] == "crop"
    assert "model.canvas: task not used" in (out / "run.log").read_text()
