"""HRM checkpoints: `arc-kit import-reference` + `forward` reproduce the fixture, ARC-size import memory, the published
HRM preset (no config file, no identifier list) and the refusal of uses that need row names."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_hub import FakeHub, HubFile, quiet_agent_registry

from arc_kit.cli.main import main
from arc_kit.identifiers import rows_unnamed
from arc_kit.model.checkpoint import load_checkpoint, load_puzzle_rows
from arc_kit.model.hrm import HRM
from arc_kit.model.hub import load_preset

HERE = Path(__file__).resolve().parent
REF = HERE / "fixtures" / "hrm-reference"
PREFIX = "_orig_mod.model.inner."


def _import(step, conf, out, command="import-reference") -> int:
    return main([command, str(step), "--config", str(conf), "-o", str(out)])


def test_import_and_forward_reproduce_the_fixture(tmp_path, capsys):
    out = tmp_path / "m"
    assert _import(REF / "step_0", REF / "all_config.yaml", out) == 0
    assert "HRM, hidden 64, 2 H + 2 L layers" in capsys.readouterr().err
    model, info = load_checkpoint(out)
    assert isinstance(model, HRM) and info.config.kind == "hrm" and info.config.no_ACT_continue is False
    assert rows_unnamed(info.puzzle_names) and len(info.puzzle_names) == 1000
    npz = tmp_path / "out.npz"
    args = ["forward", str(out), "--inputs", str(REF / "reference_io.npz"), "--steps", "4", "--states", "-o", str(npz)]
    assert main(args) == 0
    got, ref = np.load(npz), np.load(REF / "reference_io.npz")
    pos = ref["state_positions"]
    for key in ("logits", "q_halt_logits", "q_continue_logits"):
        assert got[key].shape == ref[key].shape
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-5, err_msg=key)
    for k in range(4):
        np.testing.assert_allclose(got[f"z_H_step{k}"][:, pos], ref[f"z_H_step{k}"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(got[f"z_L_step{k}"][:, pos], ref[f"z_L_step{k}"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-6)
    # the old command name stays an alias
    assert _import(REF / "step_0", REF / "all_config.yaml", tmp_path / "m2", "import-trm") == 0
    assert load_checkpoint(tmp_path / "m2")[1].config == info.config


def test_import_refuses_an_hrm_checkpoint_with_a_trm_config(tmp_path, capsys):
    conf = tmp_path / "all_config.yaml"
    conf.write_text((REF / "all_config.yaml").read_text().replace("recursive_reasoning.hrm@Hierarchical", "trm@Tiny"))
    assert _import(REF / "step_0", conf, tmp_path / "m") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unexpected keys ['H_level" in err and len(err.strip().splitlines()) == 1


def hrm_release(directory: Path, rows: int) -> tuple[dict, Path, torch.Tensor]:
    """A release like sapientinc/HRM-checkpoint-ARC-2: one file named `checkpoint` (the fixture's weights with a
    `rows`-row table), no all_config.yaml, no identifier list; and a preset naming it with an `arch` section."""
    sd = torch.load(REF / "step_0", map_location="cpu", weights_only=True)
    table = torch.randn(rows, 64, generator=torch.Generator().manual_seed(rows))
    sd[PREFIX + "puzzle_emb.weights"] = table
    step = directory / "checkpoint"
    torch.save(sd, step)
    files = {"checkpoint": HubFile(step.read_bytes())}
    spec = load_preset("hrm-arc-agi-2")  # the shipped preset, its architecture made the fixture's
    arch = (REF / "all_config.yaml").read_text().split("arch:\n", 1)[1]
    preset = directory / "hrm.yaml"
    preset.write_text(
        f"repo: test/fake-hrm\nrevision: main\ncheckpoint: {spec.checkpoint}\nconfig: ''\n"
        f"identifiers: {spec.identifiers}\narch:\n{arch}"
    )
    return files, preset, table


def test_published_hrm_preset():
    spec = load_preset("hrm-arc-agi-2")
    assert (spec.repo, spec.checkpoint, spec.config, spec.identifiers) == (
        "sapientinc/HRM-checkpoint-ARC-2",
        "checkpoint",
        "",
        "none",
    )
    assert spec.arch is not None and spec.arch["H_layers"] == 4 and "HierarchicalReasoning" in spec.arch["name"]


def test_download_unnamed_hrm_then_predict_is_refused(tmp_path, monkeypatch, capsys):
    quiet_agent_registry(monkeypatch, tmp_path)
    files, preset, table = hrm_release(tmp_path, rows=3000)
    out = tmp_path / "model"
    with FakeHub("test/fake-hrm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["checkpoint", "download", str(preset), "-o", str(out)]) == 0
        assert [p.rsplit("/", 1)[-1] for _, m, p, _ in hub.requests if m == "HEAD"] == ["checkpoint"]
    err = capsys.readouterr().err
    assert "HRM, hidden 64" in err and "3,000 numbered puzzle rows" in err
    model, info = load_checkpoint(out, puzzle_rows=[0, 2999])
    assert isinstance(model, HRM) and rows_unnamed(info.puzzle_names)
    assert torch.equal(model.puzzle_emb.weights, table[[0, 2999]]) and torch.equal(load_puzzle_rows(out), table)
    assert info.extra["source"]["config"]["from"] == "the preset's arch section"
    # predicting with its own rows needs names: one clear line, exit 2
    tasks = tmp_path / "tasks.json"
    tasks.write_text('{"0a1b2c3d": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}}')
    assert main(["predict", str(out), "--tasks", str(tasks), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "3,000 puzzle rows have no names" in err and "--identifiers" in err
    assert len(err.splitlines()) == 1


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    from arc_kit.cli.main import main
    t = time.time()
    rc = main(["import-reference", sys.argv[1], "--config", sys.argv[2], "-o", sys.argv[3]])
    print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.time() - t)
""")

MAKE_SCRIPT = textwrap.dedent("""
    import sys, torch, yaml
    from pathlib import Path
    from arc_kit.model.build import instantiate
    from arc_kit.model.config import TRMConfig
    sys.path.insert(0, sys.argv[3])
    from test_hrm import ARC_ARCH
    rows, out = int(sys.argv[1]), Path(sys.argv[2])
    arch = dict(ARC_ARCH, forward_dtype="bfloat16")
    torch.manual_seed(0)
    sd = instantiate(TRMConfig.from_reference(arch, num_puzzle_identifiers=1)).state_dict()
    sd["puzzle_emb.weights"] = torch.arange(rows, dtype=torch.float32).unsqueeze(1).expand(rows, 512).contiguous()
    torch.save({"_orig_mod.model.inner." + k: v for k, v in sd.items()}, out / "checkpoint")
    (out / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch}))
""")


@pytest.mark.e2e
def test_import_arc_size_hrm_memory(tmp_path):
    """The published HRM's layout: the ARC-size network (27.3M parameters, bfloat16 initial states) with its
    1,045,829 x 512 fp32 table (2.0 GiB): the importing process's peak RSS stays under 0.75x the table (the
    source is memory-mapped and streamed to the output)."""
    rows = 1_045_829
    subprocess.run([sys.executable, "-c", MAKE_SCRIPT, str(rows), str(tmp_path), str(HERE)], check=True)
    step, conf = tmp_path / "checkpoint", tmp_path / "all_config.yaml"
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(step), str(conf), str(tmp_path / "m")],
        check=True,
        capture_output=True,
        text=True,
    )
    rc, peak, seconds = res.stdout.split()
    table_bytes = rows * 512 * 4
    print(f"HRM import: peak RSS {int(peak) / 2**30:.2f} GiB ({int(peak) / table_bytes:.2f}x table), {seconds} s")
    assert rc == "0" and int(peak) <= 0.75 * table_bytes
    step.unlink()
    model, info = load_checkpoint(tmp_path / "m", puzzle_rows=[0, 7, rows - 1])
    assert isinstance(model, HRM) and info.config.kind == "hrm"
    assert model.num_params() == 27_276_290 and model.H_init.dtype == torch.bfloat16
    assert model.puzzle_emb.weights[:, 0].tolist() == [0.0, 7.0, float(rows - 1)]
    assert rows_unnamed(info.puzzle_names) and len(info.puzzle_names) == rows
