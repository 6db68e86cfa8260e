"""`arc-kit checkpoint download` against a loopback hub, and the shipped puzzle-identifier lists."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, quiet_agent_registry, reference_release
from helpers import assert_matches_record, identifier_record

from arc_kit.cli.main import main
from arc_kit.model.checkpoint import load_checkpoint, load_puzzle_rows

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 10 * 1024 * 1024  # huggingface_hub writes the body in 10 MiB chunks
ROWS = 48_000  # a 12.3 MB step file: more than one chunk, so an interruption leaves bytes to resume


@pytest.fixture(autouse=True)
def _offline_agent_registry(monkeypatch, tmp_path):
    quiet_agent_registry(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return reference_release(tmp_path_factory.mktemp("release"), ROWS)


def _download(preset, out, *extra) -> int:
    return main(["checkpoint", "download", str(preset), "-o", str(out), *extra])


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _assert_imported(out: Path, names, table):
    model, info = load_checkpoint(out, puzzle_rows=[0, 1, ROWS - 1])
    assert info.puzzle_names == names  # every row named from the list, in order
    assert torch.equal(model.puzzle_emb.weights, table[[0, 1, ROWS - 1]])
    assert torch.equal(load_puzzle_rows(out), table)
    assert info.config.hidden_size == 64 and info.config.L_cycles == 3  # from all_config.yaml
    src = info.extra["source"]
    assert src["repo"] == "test/fake-trm" and src["checkpoint"]["path"] == "v1/step_7"
    assert len(src["checkpoint"]["sha256"]) == 64 and len(src["config"]["git-sha1"]) == 40


@pytest.mark.e2e
def test_download_verifies_and_imports(release, tmp_path, monkeypatch, capsys):
    files, preset, names, table = release
    out = tmp_path / "model"
    with FakeHub("test/fake-trm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # read at call time, not at huggingface_hub's import
        assert _download(preset, out) == 0
        files_asked = [(s, m, p.rsplit("/", 1)[-1][:6]) for s, m, p, _ in hub.requests if "/api/" not in p]
        assert files_asked == [
            ("hub", "HEAD", "all_co"),
            ("hub", "GET", "all_co"),
            ("hub", "HEAD", "step_7"),
            ("cdn", "GET", files["v1/step_7"].etag[:6]),
        ]  # metadata, then the LFS file from the CDN
        assert hub.ranges() == []
        _assert_imported(out, names, table)
        assert _leftovers(out) == []  # download and import folders are gone
        assert _download(preset, out) == 2
        assert "already exists (use --force" in capsys.readouterr().err
        (out / "stale.txt").write_text("from before")
        assert _download(preset, out, "--force") == 0  # swapped in whole: the old folder is gone
        assert not (out / "stale.txt").exists() and _leftovers(out) == []
    _assert_imported(out, names, table)


def test_dropped_connection_resumes_with_a_range_request(release, tmp_path, monkeypatch):
    files, preset, names, table = release
    out = tmp_path / "model"
    with FakeHub("test/fake-trm", files) as hub:
        hub.behaviour.drop_after = CHUNK + 4096
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert _download(preset, out, "--keep-download") == 0
        assert hub.ranges() == [f"bytes={CHUNK}-"]  # the client's retry asked only for the rest
    _assert_imported(out, names, table)
    kept = list((tmp_path / ".model.download").iterdir())
    assert sorted(p.name.split(".")[0] for p in kept) == ["v1__all_config", "v1__step_7"]
    assert not [p for p in kept if p.name.endswith(".partial")]


@pytest.mark.e2e
def test_killed_run_resumes_on_rerun(release, tmp_path, monkeypatch):
    files, preset, names, table = release
    out = tmp_path / "model"
    with FakeHub("test/fake-trm", files) as hub:
        hub.behaviour.stall_after = CHUNK + 4096
        env = {**os.environ, "HF_ENDPOINT": hub.url, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "arc_kit.cli", "checkpoint", "download", str(preset), "-o", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert hub.behaviour.stalled.wait(60), "the transfer never started"
            partial = None
            deadline = time.time() + 30
            while time.time() < deadline:  # the first 10 MiB chunk reaches the disk
                partial = next((tmp_path / ".model.download").glob("*.partial"), None)
                if partial is not None and partial.stat().st_size >= CHUNK:
                    break
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
            hub.behaviour.release.set()
        assert partial is not None and partial.stat().st_size == CHUNK
        assert not out.exists()  # nothing looks complete
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert _download(preset, out) == 0
        assert hub.ranges() == [f"bytes={CHUNK}-"]  # the re-run fetched only the rest
    _assert_imported(out, names, table)


def test_corrupt_transfer_is_refused_and_deleted(release, tmp_path, monkeypatch, capsys):
    files, preset, _, _ = release
    out = tmp_path / "model"
    bad = {**files, "v1/step_7": type(files["v1/step_7"])(files["v1/step_7"].data, corrupt=True)}
    with FakeHub("test/fake-trm", bad) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert _download(preset, out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "checksum mismatch" in err and "v1/step_7" in err
    assert not out.exists()
    left = [p.name for p in (tmp_path / ".model.download").iterdir()]
    assert [n for n in left if "step_7" in n] == []  # neither a complete nor a partial step file


def test_hub_errors_are_one_line(release, tmp_path, monkeypatch, capsys):
    files, preset, _, _ = release
    out = tmp_path / "model"
    with FakeHub("test/fake-trm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert _download(preset, out, "checkpoint=v1/step_8") == 2  # 404: names the URL tried
        err = capsys.readouterr().err
        assert f"error: {hub.url}/test/fake-trm/resolve/main/v1/step_8: HTTP 404" in err
        assert _download(preset, out, "revision=v9") == 2
        assert (
            f"{hub.url}/test/fake-trm/resolve/v9/v1/all_config.yaml: HTTP 404: revision 'v9'" in capsys.readouterr().err
        )
        assert _download(preset, out, "size=12345") == 2  # wrong size, before any byte moves
        assert "expected 12,345 (setting 'size')" in capsys.readouterr().err
        assert _download(preset, out, "sha256=" + "0" * 64) == 2
        assert "differs from the pinned sha256" in capsys.readouterr().err
        hub.behaviour.fail_status = 403  # the CDN refuses the transfer
        assert _download(preset, out) == 2
        assert "/blobs/" in (err := capsys.readouterr().err) and "HTTP 403 while downloading v1/step_7" in err
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    out = tmp_path / "other"
    assert _download(preset, out) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(
            f"error: {dead}/test/fake-trm/resolve/main/v1/all_config.yaml: cannot reach the hub at {dead} (ConnectError"
        )
        and err.count("\n") == 1
    )
    assert not out.exists() and _leftovers(out) == []


def test_missing_extra_and_full_disk(release, tmp_path, monkeypatch, capsys):
    files, preset, _, _ = release
    out = tmp_path / "model"
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    assert _download(preset, out) == 2
    assert "pip install 'arc-kit[hub]'" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "huggingface_hub")
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    with FakeHub("test/fake-trm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert _download(preset, out) == 2
    err = capsys.readouterr().err
    assert "not enough disk space for v1/step_7 (+ its import)" in err and "1,000,000 bytes free" in err
    assert not out.exists()
    monkeypatch.undo()
    quiet_agent_registry(monkeypatch, tmp_path)
    import errno

    import huggingface_hub.file_download as fd

    import arc_kit.model.reference

    real_get = fd.http_get

    def full_disk(url, f, **kw):  # the disk fills after 1000 bytes of the step file
        f.write(files["v1/step_7"].data[:1000])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    with FakeHub("test/fake-trm", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(
            fd, "http_get", lambda url, f, **kw: (full_disk if "blobs" in url else real_get)(url, f, **kw)
        )
        assert _download(preset, out) == 2
        err = capsys.readouterr().err
        assert "disk full while downloading (1,000 bytes kept): free some space and run again to resume" in err
        assert [p.name.endswith(".partial") for p in (tmp_path / ".model.download").glob("*step_7*")] == [True]
        monkeypatch.setattr(fd, "http_get", real_get)

        def no_room(*a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(arc_kit.model.reference, "import_reference", no_room)
        assert _download(preset, out) == 2  # the download completes (resumed), the import finds the disk full
        assert "disk full while importing" in capsys.readouterr().err
        assert hub.ranges() == ["bytes=1000-"]
    assert not out.exists() and _leftovers(out) == [".model.download"]  # the verified download is kept


def test_published_presets_name_the_shipped_lists():
    from arc_kit.identifiers import RECIPES
    from arc_kit.model.hub import load_preset

    for name, ids, step, size in [
        ("arc-agi-1", "arc1", "arc_v1_public/step_518071", 1_822_205_258),
        ("arc-agi-2", "arc2", "arc_v2_public/step_723914", 2_467_988_810),
    ]:
        spec = load_preset(name)
        assert (spec.repo, spec.identifiers, spec.checkpoint, spec.size) == (
            "arcprize/trm_arc_prize_verification",
            ids,
            step,
            size,
        )
        assert spec.config == step.rsplit("/", 1)[0] + "/all_config.yaml" and ids in RECIPES


@pytest.mark.e2e
@pytest.mark.parametrize("build", ["arc1", "arc2"])
def test_shipped_identifier_lists_equal_the_reference(build):
    from arc_kit.identifiers import RECIPES
    from arc_kit.shipped_identifiers import DATA_DIR, SHIPPED, shipped_identifiers

    names = shipped_identifiers(build)
    assert len(names) == RECIPES[build].rows
    assert_matches_record(names, identifier_record(build)["identifiers"])  # element for element, by hash
    assert (DATA_DIR / SHIPPED[build]).stat().st_size < 4_000_000


def test_identifier_encoding_round_trip_and_refusals(tmp_path):
    from arc_kit import shipped_identifiers as si
    from arc_kit.base.errors import ArcKitError

    decode_identifiers, encode_identifiers = si.decode_identifiers, si.encode_identifiers
    read_identifier_file, write_identifier_file = si.read_identifier_file, si.write_identifier_file
    names = ["<blank>", "abc", "abc|||t7|||0987654321", "Copy4", "abc|||t0|||0123456789", "Copy4|||t3|||0192837465"]
    assert decode_identifiers(encode_identifiers(names)) == names
    write_identifier_file(tmp_path / "ids.npz", names)
    assert read_identifier_file(tmp_path / "ids.npz") == names
    for bad in (["abc"], ["<blank>", "a|||t8|||0123456789"], ["<blank>", "a|||t1|||1023456789"], ["<blank>", ""]):
        with pytest.raises(ArcKitError):
            encode_identifiers(bad)
    arrays = encode_identifiers(names)
    arrays["perm_low"][1] ^= 1  # a damaged file fails its digest
    with pytest.raises(ArcKitError, match="digest"):
        decode_identifiers(arrays)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ArcKitError, match="not a compact identifier file"):
        read_identifier_file(tmp_path / "junk.npz")
