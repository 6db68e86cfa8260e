"""Commands `tasks` and `show`: output, JSON, pictures and exit codes."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import pytest
from helpers import simple_task, write_challenges, write_task_dir

from arc_kit.cli.main import main
from arc_kit.data import load_tasks
from arc_kit.render import render_png, task_figure


def test_tasks_table_and_summary(challenges_file, capsys):
    assert main(["tasks", str(challenges_file)]) == 0
    out = capsys.readouterr().out
    assert "task      train  test  max grid  solutions" in out
    assert "b             2     2       3x3  yes" in out
    assert "3 tasks, 6 demonstration pairs, 4 test inputs (1 tasks with several), 3 with solutions" in out


def test_tasks_json_is_machine_output(challenges_file, capsys):
    assert main(["tasks", str(challenges_file), "--ids", "c,a", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [t["id"] for t in data["tasks"]] == ["a", "c"]
    assert data["tasks"][1] == {
        "id": "c",
        "train": 2,
        "test": 1,
        "max_height": 5,
        "max_width": 5,
        "has_solutions": True,
        "version": "",
    }
    assert data["summary"]["tasks"] == 2 and data["summary"]["fit"]["10"] == 2


def test_tasks_bundled_selection(capsys):
    assert main(["tasks", "arc-agi-1/evaluation", "--max-size", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 0 < data["summary"]["tasks"] < 400 and data["summary"]["max_grid_size"] <= 10
    assert all(t["version"] == "arcagi" for t in data["tasks"])


def test_tasks_bad_input_exit_2(tmp_path, capsys):
    bad = simple_task()
    bad["test"][0]["input"] = [[1, 2], [3]]
    root = write_task_dir(tmp_path / "d", {"good": simple_task(), "bad": bad})
    assert main(["tasks", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.json: task bad: test[0].input: ragged grid" in err
    assert err.count("\n") == 1
    # lenient: listed as a warning, the valid task still shows
    assert main(["tasks", str(root), "--lenient"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "invalid (skipped): 1: bad" in captured.out
    assert main(["tasks", str(root), "--ids", "nope"]) == 2
    assert "task id(s) not found: nope" in capsys.readouterr().err


def test_show_png_and_svg(challenges_file, tmp_path, capsys):
    png = tmp_path / "a.png"
    assert main(["show", "b", "--tasks", str(challenges_file), "-o", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" in data[-12:]
    svg = tmp_path / "a.svg"
    assert main(["show", "b", "--tasks", str(challenges_file), "-o", str(svg)]) == 0
    root = ET.fromstring(svg.read_text())
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "task b" in texts and "test 2 3x3" in texts and "truth 3x3" in texts


def test_show_with_submission_marks_attempts(challenges_file, tmp_path):
    task = load_tasks(challenges_file).tasks["b"]
    right, wrong = task.test[0].output, [[1]]
    sub = tmp_path / "submission.json"
    sub.write_text(
        json.dumps({"b": [{"attempt_1": wrong, "attempt_2": right}, {"attempt_1": "junk", "attempt_2": wrong}]})
    )
    out = tmp_path / "b.svg"
    assert main(["show", "b", "--tasks", str(challenges_file), "--submission", str(sub), "-o", str(out)]) == 0
    text = out.read_text()
    assert "attempt 2 3x3" in text and "attempt 1 invalid" in text
    fig = task_figure(task, [[wrong, right], ["junk", wrong]])
    borders = [p.border for p in fig.panels if p.label.startswith("attempt")]
    assert borders == ["#FF4136", "#2ECC40", "#FF4136", "#FF4136"]


def test_show_errors(challenges_file, tmp_path, capsys):
    assert main(["show", "zz", "--tasks", str(challenges_file), "-o", str(tmp_path / "x.png")]) == 2
    assert "task id(s) not found: zz" in capsys.readouterr().err
    assert main(["show", "a", "--tasks", str(challenges_file), "-o", str(tmp_path / "x.gif")]) == 2
    assert "x.gif: picture must end in .png or .svg" in capsys.readouterr().err
    sub = tmp_path / "s.json"
    sub.write_text(json.dumps({"b": []}))
    assert (
        main(["show", "a", "--tasks", str(challenges_file), "--submission", str(sub), "-o", str(tmp_path / "x.png")])
        == 2
    )
    assert "s.json: task a: not in the submission" in capsys.readouterr().err
    sub.write_text("{")
    assert (
        main(["show", "a", "--tasks", str(challenges_file), "--submission", str(sub), "-o", str(tmp_path / "x.png")])
        == 2
    )
    assert "s.json: malformed JSON" in capsys.readouterr().err


def test_png_pixels_show_the_grid():
    task = load_tasks("arc-agi-1/training", ids=["007bbfb7"]).tasks["007bbfb7"]
    fig = task_figure(task)
    data = render_png(task)
    # decode our own PNG: one IDAT, filter 0 per row
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    stride = 1 + 3 * fig.width
    first = fig.panels[0]  # train input 1, cell (0, 0) is colour 0 -> #252525; cell (0, 1) colour 7 -> #FF871E

    def pixel(x, y):
        return raw[y * stride + 1 + 3 * x : y * stride + 4 + 3 * x].hex().upper()

    assert pixel(first.x + 1, first.y + 1) == "252525"
    assert pixel(first.x + fig.cell + 1, first.y + 1) == "FF871E"


@pytest.mark.e2e
def test_console_script_no_traceback(tmp_path):
    path = write_challenges(
        tmp_path,
        {"a": {"train": [{"input": [[1]], "output": [[True]]}], "test": [{"input": [[1]]}]}},
        with_solutions=False,
    )
    r = subprocess.run(["arc-kit", "tasks", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"error: {path}: task a: train[0].output: cell [0][0] is true (a boolean), expected an integer 0..9"
    )
    r = subprocess.run(
        [sys.executable, "-m", "arc_kit.cli", "tasks", "arc-agi-2/evaluation", "--limit", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "2 tasks" in r.stdout
