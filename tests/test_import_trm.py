"""`arc-kit import-trm` and `arc-kit forward`: reference checkpoints (built here in the reference format) -> kit."""

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import MINI, PREFIX, REF, REFERENCE_TINY, tiny_trm_config

from arc_kit.cli.main import main
from arc_kit.model.checkpoint import load_checkpoint, save_checkpoint
from arc_kit.model.trm import TRM, TRMConfig

ARCH_KEYS = (
    "hidden_size",
    "num_heads",
    "L_layers",
    "H_cycles",
    "L_cycles",
    "expansion",
    "puzzle_emb_ndim",
    "puzzle_emb_len",
    "pos_encodings",
    "rope_theta",
    "rms_norm_eps",
    "halt_max_steps",
    "halt_exploration_prob",
    "forward_dtype",
    "mlp_t",
    "no_ACT_continue",
)


def write_reference(
    directory: Path, cfg: TRMConfig, table: torch.Tensor | None = None, drop=(), prefix=PREFIX
) -> tuple[Path, Path]:
    """A checkpoint as the reference trainer writes it (torch.save of the compiled loss head's state dict)
    and its all_config.yaml (reference names; seq_len, vocab and table rows are not in it)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    sd = TRM(cfg).state_dict()
    if table is not None:
        sd["puzzle_emb.weights"] = table
    step = directory / "step_7"
    torch.save({prefix + k: v for k, v in sd.items() if k not in drop}, step)
    arch = {k: getattr(cfg, k) for k in ARCH_KEYS}
    arch.update(
        name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
        H_layers=0,
        loss={"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
    )
    conf = directory / "all_config.yaml"
    conf.write_text(yaml.safe_dump({"arch": arch, "lr": 1e-4, "global_batch_size": 768}))
    return step, conf


def full_size_config(rows: int) -> TRMConfig:
    spec = json.loads((REF / "arc_full_size_state_dict_shapes.json").read_text())["arch"]
    return TRMConfig.from_reference(spec, num_puzzle_identifiers=rows)


@pytest.mark.e2e
def test_import_and_forward_reproduce_reference_fixture(tmp_path, capsys):
    out_dir, npz = tmp_path / "model", tmp_path / "out.npz"
    assert main(["import-trm", str(REF / "step_0"), "--config", str(REF / "all_config.yaml"), "-o", str(out_dir)]) == 0
    names = json.loads((out_dir / "puzzles.json").read_text())
    assert names == [f"row{i}" for i in range(7)]  # no identifiers: numbered rows
    assert (
        main(
            [
                "forward",
                str(out_dir),
                "--inputs",
                str(REF / "reference_io.npz"),
                "--steps",
                "4",
                "-o",
                str(npz),
                "--states",
            ]
        )
        == 0
    )
    got, ref = np.load(npz), np.load(REF / "reference_io.npz")
    assert got["logits"].shape == (4, 4, 900, 12)
    # the fixture keeps logits at every 4th cell (the argmax at all), states at sampled cells
    np.testing.assert_allclose(got["logits"][:, :, ref["logit_cells"]], ref["logits"], rtol=0, atol=1e-4)
    assert (got["logits"].argmax(-1) == ref["preds"]).all()
    for key in ["q_halt_logits", "q_continue_logits"]:
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-4, err_msg=key)
    for key in [f"z_{h}_step{k}" for h in "HL" for k in range(4)]:
        np.testing.assert_allclose(got[key][:, ref["state_cells"]], ref[key], rtol=0, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-6, atol=0)
    assert main(["import-trm", str(REF / "step_0"), "--config", str(REF / "all_config.yaml"), "-o", str(out_dir)]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_full_size_layout_with_identifiers(tmp_path):
    names = json.loads((MINI / "identifiers.json").read_text())
    cfg = full_size_config(len(names))
    table = torch.randn(len(names), 512)
    step, conf = write_reference(tmp_path / "ref", cfg, table)
    ids = tmp_path / "identifiers.json"
    ids.write_text(json.dumps(names))
    assert (
        main(["import-trm", str(step), "--config", str(conf), "--identifiers", str(ids), "-o", str(tmp_path / "m")])
        == 0
    )
    model, info = load_checkpoint(tmp_path / "m")
    assert info.puzzle_names == names and info.config == cfg and info.extra["reference_config"]["lr"] == 1e-4
    spec = json.loads((REF / "arc_full_size_state_dict_shapes.json").read_text())["state_dict_shapes"]
    spec[PREFIX + "puzzle_emb.weights"] = [len(names), 512]
    assert {PREFIX + k: list(v.shape) for k, v in model.state_dict().items()} == spec
    assert model.num_params() == 6_829_058
    src = torch.load(step, weights_only=True)
    for k, v in model.state_dict().items():
        assert v.dtype == src[PREFIX + k].dtype and torch.equal(v, src[PREFIX + k]), k  # H_init stays bf16
    # the kit's own save of the imported model is byte-identical to the import
    save_checkpoint(tmp_path / "again", model, info.puzzle_names, extra_config=info.extra)
    for f in ("model.safetensors", "puzzle_emb.safetensors", "puzzles.json", "config.yaml"):
        assert (tmp_path / "m" / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_rebuild_identifiers(tmp_path, capsys):
    names = json.loads((MINI / "identifiers.json").read_text())
    cfg = tiny_trm_config(**REFERENCE_TINY, num_puzzle_identifiers=len(names))
    step, conf = write_reference(tmp_path / "ref", cfg)
    args = ["import-trm", str(step), "--config", str(conf), "--rebuild-identifiers", str(MINI / "source"), "-o"]
    assert (
        main(
            args
            + [str(tmp_path / "m"), "--subsets", "training", "evaluation", "--test-set", "evaluation", "--num-aug", "3"]
        )
        == 0
    )
    assert json.loads((tmp_path / "m" / "puzzles.json").read_text()) == names
    assert main(args + [str(tmp_path / "n")]) == 2  # 21 rows: no known build to infer the recipe from
    assert f"puzzle table of {len(names)} rows matches no known reference build" in capsys.readouterr().err


def _import_error(tmp_path, capsys, step, conf, *extra) -> str:
    assert main(["import-trm", str(step), "--config", str(conf), "-o", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_import_errors(tmp_path, capsys):
    cfg = tiny_trm_config(**REFERENCE_TINY)
    step, conf = write_reference(tmp_path / "ok", cfg)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    assert f"{junk}: not a PyTorch checkpoint" in _import_error(tmp_path, capsys, junk, conf)

    class Evil:  # a pickle that would run code: weights_only refuses it
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    err = _import_error(tmp_path, capsys, evil, conf)
    assert f"{evil}: not a PyTorch checkpoint that loads safely" in err and "pwned" not in err

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    assert "key 'weight' is not under '_orig_mod.model.inner.'" in _import_error(tmp_path, capsys, plain, conf)

    s2, _ = write_reference(tmp_path / "drop", cfg, drop=("L_level.layers.0.self_attn.o_proj.weight",))
    assert "missing keys ['L_level.layers.0.self_attn.o_proj.weight']" in _import_error(tmp_path, capsys, s2, conf)

    big = tiny_trm_config(**(REFERENCE_TINY | dict(hidden_size=64)))
    s3, _ = write_reference(tmp_path / "big", big)
    assert "'H_init' has shape [64] but all_config.yaml implies [32]" in _import_error(tmp_path, capsys, s3, conf)

    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(["<blank>", "a", "b"]))
    err = _import_error(tmp_path, capsys, step, conf, "--identifiers", str(ids))
    assert f"{ids}: 3 identifiers but the puzzle table of {step} has 5 rows" in err
    gz = tmp_path / "ids.json.gz"  # gzip-compressed lists are read too
    gz.write_bytes(gzip.compress(json.dumps(["<blank>", "a"]).encode()))
    err = _import_error(tmp_path, capsys, step, conf, "--identifiers", str(gz))
    assert f"{gz}: 2 identifiers but the puzzle table of {step} has 5 rows" in err
    ids.write_text(json.dumps({"rows": 5}))
    assert f"{ids}: expected a JSON list of puzzle names" in _import_error(
        tmp_path, capsys, step, conf, "--identifiers", str(ids)
    )

    bad_conf = tmp_path / "noarch.yaml"
    bad_conf.write_text("lr: 1\n")
    assert "no 'arch:' section" in _import_error(tmp_path, capsys, step, bad_conf)
    assert "checkpoint file not found" in _import_error(tmp_path, capsys, tmp_path / "nope", conf)


def test_forward_errors_and_defaults(tmp_path, capsys):
    assert (
        main(["import-trm", str(REF / "step_0"), "--config", str(REF / "all_config.yaml"), "-o", str(tmp_path / "m")])
        == 0
    )
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((2, 900), np.int32))
    assert main(["forward", str(tmp_path / "m"), "--inputs", str(bad), "-o", str(tmp_path / "o.npz")]) == 2
    assert "missing array 'puzzle_identifiers'" in capsys.readouterr().err
    ok = tmp_path / "ok.npz"
    np.savez(ok, inputs=np.zeros((2, 900), np.int32), puzzle_identifiers=np.array([6, 3]))
    assert (
        main(["forward", str(tmp_path / "m"), "--inputs", str(ok), "--steps", "2", "-o", str(tmp_path / "o.npz")]) == 0
    )
    out = np.load(tmp_path / "o.npz")
    assert out["logits"].shape == (2, 2, 900, 12) and out["q_halt_logits"].shape == (2, 2) and "loss" not in out
    np.savez(ok, inputs=np.zeros((1, 900), np.int32), puzzle_identifiers=np.array([7]))
    assert main(["forward", str(tmp_path / "m"), "--inputs", str(ok), "-o", str(tmp_path / "o.npz")]) == 2
    assert "out of range" in capsys.readouterr().err


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    from arc_kit.cli.main import main
    t = time.time()
    rc = main(["import-trm", sys.argv[1], "--config", sys.argv[2], "-o", sys.argv[3]])
    print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.time() - t)
""")


@pytest.mark.e2e
def test_import_full_size_table_memory(tmp_path):
    """876,406 x 512 fp32 (the published ARC-AGI-1 table, 1.8 GB): the importing process's peak RSS stays
    under 0.75x the table (measured 0.26x, mostly torch itself: the source is memory-mapped and each
    streamed chunk's pages are released)."""
    rows, ndim = 876_406, 512
    big = dict(hidden_size=64, num_heads=4, puzzle_emb_ndim=ndim, num_puzzle_identifiers=1)
    cfg = tiny_trm_config(**(REFERENCE_TINY | big))
    # build the reference file in a child process so this process never holds the table
    make = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_import_trm import write_reference
        from arc_kit.model.trm import TRMConfig
        table = torch.arange({rows}, dtype=torch.float32).unsqueeze(1).expand({rows}, {ndim}).contiguous()
        write_reference(__import__("pathlib").Path(sys.argv[1]), TRMConfig(**{cfg.__dict__!r}), table)
    """)
    subprocess.run([sys.executable, "-c", make, str(tmp_path / "ref")], check=True)
    step, conf = tmp_path / "ref" / "step_7", tmp_path / "ref" / "all_config.yaml"
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(step), str(conf), str(tmp_path / "m")],
        check=True,
        capture_output=True,
        text=True,
    )
    rc, peak, seconds = res.stdout.split()
    table_bytes = rows * ndim * 4
    print(
        f"import of a {table_bytes / 2**30:.2f} GiB table: peak RSS {int(peak) / 2**30:.2f} GiB "
        f"({int(peak) / table_bytes:.2f}x table), {float(seconds):.1f} s"
    )
    assert rc == "0" and int(peak) <= 0.75 * table_bytes
    step.unlink()
    from arc_kit.model.checkpoint import load_puzzle_rows

    some = list(range(0, rows, 997)) + [rows - 1]
    got = load_puzzle_rows(tmp_path / "m", some)
    assert got[:, 0].tolist() == [float(r) for r in some] and bool((got == got[:, :1]).all())


@pytest.mark.parametrize("variant", [dict(mlp_t=True), dict(pos_encodings="learned")])
def test_import_reads_seq_len_off_the_tensors(tmp_path, variant):
    shape = dict(hidden_size=32, L_cycles=2, puzzle_emb_ndim=32, puzzle_emb_len=2, num_puzzle_identifiers=3)
    cfg = tiny_trm_config(**shape, expansion=4.0, **variant)
    step, conf = write_reference(tmp_path, cfg, torch.randn(3, 32))
    assert main(["import-trm", str(step), "--config", str(conf), "-o", str(tmp_path / "m")]) == 0
    model, info = load_checkpoint(tmp_path / "m")
    assert info.config == cfg
    src = TRM(cfg)
    src.load_state_dict({k.removeprefix(PREFIX): v for k, v in torch.load(step, weights_only=True).items()})
    b = {"inputs": torch.randint(0, 12, (2, 16)), "puzzle_identifiers": torch.tensor([2, 1])}
    assert torch.equal(model.predict(b, return_logits=True)["logits"], src.predict(b, return_logits=True)["logits"])
