"""A broken checkpoint is refused before anything runs: verify_checkpoint's findings, and `arc-kit run` / `predict`
exit 2 with one line naming the file, before any directory is made; on Kaggle the fallback submission stays."""

import json
import time
from pathlib import Path

import pytest
import torch
from helpers import simple_task, tiny_config, tiny_trm_config, write_task_dir

from arc_kit.base.errors import ArcKitError
from arc_kit.cli.main import main
from arc_kit.kaggle import job as kj
from arc_kit.kaggle import settings as ak
from arc_kit.model.checkpoint import save_checkpoint, write_table
from arc_kit.model.starter import export_checkpoint
from arc_kit.model.trm import TRM
from arc_kit.model.verify import verify_checkpoint


def tiny_model(rows: int = 3, hidden: int = 16) -> TRM:
    cfg = tiny_trm_config(hidden_size=hidden, num_puzzle_identifiers=rows, halt_max_steps=1)
    torch.manual_seed(0)
    return TRM(cfg)


@pytest.fixture
def ck(tmp_path) -> Path:
    d = tmp_path / "ck"
    save_checkpoint(d, tiny_model(), ["<blank>", "t0", "t1"])
    return d


def truncate(path: Path, n: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:-n])


def refused(d: Path, *words: str) -> str:
    with pytest.raises(ArcKitError) as e:
        verify_checkpoint(d)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_an_intact_checkpoint_passes_and_returns_its_info(ck):
    info = verify_checkpoint(ck)
    assert info.puzzle_names == ["<blank>", "t0", "t1"] and info.config.hidden_size == 16


def test_truncated_or_padded_weights_are_found_from_the_header(ck):
    model = ck / "model.safetensors"
    blob = model.read_bytes()
    truncate(model)
    refused(ck, str(model), "truncated", f"{len(blob) - 100:,} bytes", f"{len(blob):,}")
    model.write_bytes(blob[:5])
    refused(ck, str(model), "truncated")
    model.write_bytes(blob + b"\0" * 8)
    refused(ck, str(model), "trailing bytes")
    model.write_bytes(b"\xff" * 64)
    refused(ck, str(model), "not a safetensors file")
    model.unlink()
    refused(ck, str(model), "missing")


def test_a_truncated_puzzle_table_is_refused(ck):
    truncate(ck / "puzzle_emb.safetensors", 4)
    refused(ck, str(ck / "puzzle_emb.safetensors"), "truncated")


def test_a_puzzle_table_of_the_wrong_shape_is_refused(ck):
    write_table(ck / "puzzle_emb.safetensors", torch.zeros(5, 16))  # config.yaml and puzzles.json say 3 rows
    refused(ck, str(ck / "puzzle_emb.safetensors"), "[5, 16]", "[3, 16]")
    write_table(ck / "puzzle_emb.safetensors", torch.zeros(3, 8))
    refused(ck, "puzzle_emb.safetensors", "[3, 8]", "puzzle_emb_ndim 16")


def test_network_tensors_must_match_the_config(tmp_path, ck):
    save_checkpoint(tmp_path / "wide", tiny_model(hidden=32), ["<blank>", "t0", "t1"])
    (ck / "model.safetensors").write_bytes((tmp_path / "wide" / "model.safetensors").read_bytes())
    refused(ck, str(ck / "model.safetensors"), "[32", "[16")


def test_config_and_puzzles_json_are_checked(ck):
    (ck / "puzzles.json").write_text(json.dumps(["<blank>", "t0"]))
    refused(ck, str(ck / "puzzles.json"), "2 names", "3 puzzle rows")
    (ck / "config.yaml").write_text("format: [unclosed\n")
    refused(ck, str(ck / "config.yaml"), "malformed YAML")


def test_a_changed_table_differs_from_its_recorded_hash(ck):
    table = ck / "puzzle_emb.safetensors"
    blob = bytearray(table.read_bytes())
    blob[-1] ^= 0xFF  # same size, same header: only the hash can tell
    table.write_bytes(bytes(blob))
    refused(ck, str(table), "sha256")


def test_an_exported_checkpoint_is_checked_against_its_manifest(tmp_path, ck):
    export_checkpoint(ck, tmp_path / "shipped")
    shipped = tmp_path / "shipped"
    verify_checkpoint(shipped)
    model = shipped / "model.safetensors"
    blob = bytearray(model.read_bytes())
    blob[-1] ^= 0xFF  # a weight changed: same size and header, only the manifest's hash can tell
    model.write_bytes(bytes(blob))
    refused(shipped, str(model), "sha256 differs from MANIFEST.json")
    blob[-1] ^= 0xFF
    model.write_bytes(bytes(blob))
    (shipped / "puzzles.json").write_text(json.dumps(["<blank>"]) + "    \n")  # still valid JSON, longer
    refused(shipped, str(shipped / "puzzles.json"), "bytes, MANIFEST.json says")
    (shipped / "MANIFEST.json").write_text("[1, 2]")
    refused(shipped, str(shipped / "MANIFEST.json"), "unreadable")


@pytest.mark.parametrize("damage", ["truncated", "wrong-shape"])
def test_run_and_predict_refuse_a_broken_checkpoint_before_making_a_directory(tmp_path, ck, capsys, damage):
    import yaml

    if damage == "truncated":
        truncate(ck / "model.safetensors")
        culprit, what = ck / "model.safetensors", "truncated"
    else:
        write_table(ck / "puzzle_emb.safetensors", torch.zeros(7, 16))
        culprit, what = ck / "puzzle_emb.safetensors", "[7, 16]"
    tasks = write_task_dir(tmp_path / "tasks", {f"t{i}": simple_task(size=3, colour=1 + i) for i in range(2)})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tasks)))
    capsys.readouterr()
    for argv in (
        ["run", "--config", str(config), "--checkpoint", str(ck), "--out", str(tmp_path / "out" / "run")],
        ["predict", str(ck), "--tasks", str(tasks), "--out", str(tmp_path / "out" / "preds"), "--device", "cpu"],
    ):
        assert main(argv) == 2, argv
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(culprit) in errors[0] and what in errors[0], errors
        assert not (tmp_path / "out").exists()  # no run directory, no fallback submission


@pytest.mark.e2e
def test_on_kaggle_the_fallback_stays_and_the_broken_checkpoint_is_reported(tmp_path, ck):
    """The notebook's order: its first cell writes the fallback, then the job (`arc-kit run --checkpoint` of the
    attached dataset) is refused up front, and the summary names the broken file; the fallback is the submission."""
    truncate(ck / "model.safetensors")
    comp = tmp_path / "input" / "competitions" / ak.DEFAULT_SLUG
    tasks = {"a": simple_task(size=3), "b": simple_task(size=3, colour=3)}
    comp.mkdir(parents=True)
    (comp / ak.TEST_FILE).write_text(
        json.dumps({t: {**v, "test": [{"input": v["test"][0]["input"]}]} for t, v in tasks.items()})
    )
    env = {
        "ARC_KIT_INPUT_ROOT": str(tmp_path / "input"),
        "ARC_KIT_OUTPUT_DIR": str(tmp_path / "working"),
        "ARC_KIT_CHECKPOINT_DIR": str(ck),
        "KAGGLE_IS_COMPETITION_RERUN": "1",
        "ARC_KIT_BUDGET_MINUTES": "5",
        "ARC_KIT_SAFETY_MINUTES": "1",
        "ARC_KIT_CONFIG": "cpu-demo",
    }
    s = ak.resolve_settings(t0=time.time(), env=env, probe_gpus=False)
    assert s.checkpoint_dir == str(ck)
    out = Path(s.output_dir)
    out.mkdir(parents=True)
    fallback = {t: [{"attempt_1": v["test"][0]["input"], "attempt_2": v["test"][0]["input"]}] for t, v in tasks.items()}
    (out / "submission.json").write_text(json.dumps(fallback))  # the notebook's first cell
    lines: list[str] = []
    job = kj.run_job(s, echo=lines.append)
    assert job.returncode == 2 and not job.timed_out
    summary = kj.finish(s, fallback, job)
    text = kj.format_summary(summary)
    assert summary["source"] == "fallback" and json.loads((out / "submission.json").read_text()) == fallback
    assert "exit 2 (bad configuration or input" in text
    problem = [line for line in text.splitlines() if line.startswith("problem: arc-kit run: error:")]
    assert len(problem) == 1 and str(ck / "model.safetensors") in problem[0] and "truncated" in problem[0]
    assert not (out / "arc-kit-run").exists()  # refused before its run directory was made
