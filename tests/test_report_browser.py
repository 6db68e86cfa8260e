"""report.html in a real browser: headless Chromium opens it from file://, without console errors; filters work."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import synthetic, write_predictions, write_task_files

from arc_kit.run.html_report import ReportInputs, build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    # a missing browser is a failure, never a skip: CI (.ci/run) installs Debian's chromium package
    pytest.fail("no headless browser (chromium) on PATH: apt-get install -y chromium (.ci/run does)")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",  # console messages and uncaught errors land on stderr as CONSOLE lines
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
def test_report_in_headless_chromium(tmp_path):
    ts, preds = synthetic(120, 30)  # ARC-AGI-2 size: 120 tasks of 30x30 grids
    ch, sol = write_task_files(tmp_path / "data", ts)
    p = write_predictions(tmp_path / "run" / "predictions.jsonl", preds)
    page, view = build_report(ReportInputs([str(p)], tasks=str(ch), solutions=str(sol)))
    marks = [t.mark for t in view.tasks]

    url = page.resolve().as_uri() + "#selftest"  # the page clicks its own filter buttons and writes what it saw
    res = _chromium(["--virtual-time-budget=10000", "--dump-dom", url], tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "console messages:\n" + "\n".join(console)
    dom = res.stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-ready="1"' in body and "data-errors" not in body
    assert 'data-cards="120"' in body
    drawn = int(re.search(r'data-drawn="(\d+)"', body).group(1))
    assert drawn == sum(
        2 * len(t.train) + sum(2 + len(o.attempts) + len(o.candidates) for o in t.outputs) for t in view.tasks
    )
    assert len(re.findall(r'<section class="card[^"]*" data-task="[0-9a-f]{8}"', dom)) == 120
    seen = json.loads(re.search(r'<pre id="selftest">([^<]*)</pre>', dom).group(1))
    # visible cards after each filter click (laid out by the browser, not counted from the markup)
    assert seen["all"] == 120
    assert seen["solved"] == marks.count("solved") == 40
    assert seen["unsolved"] == marks.count("unsolved") + marks.count("found") == 80
    assert seen["found"] == marks.count("found") == 40

    shots = Path(os.environ.get("ARC_KIT_ARTIFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report.png"
    res = _chromium(
        ["--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", page.resolve().as_uri()],
        tmp_path / "profile2",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
