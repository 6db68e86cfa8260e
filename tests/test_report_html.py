"""report.html: the builder's structure, marks, escaping and size; a run directory's report; `arc-kit report`."""

import json
import re
from pathlib import Path

import pytest
from report_fixtures import synthetic, write_predictions, write_task_files

from arc_kit.base.config import to_dict
from arc_kit.cli.main import main
from arc_kit.data import TaskSet, task_set_to_json
from arc_kit.predictions import parse_prediction
from arc_kit.report_html import (
    CandidateView,
    OutputView,
    ReportView,
    TaskView,
    build_html,
    loss_svg,
    page_data,
    task_views,
)
from arc_kit.run.config import RunConfig
from arc_kit.run.html_report import ReportInputs, build_report, read_losses, run_view, write_run_html
from arc_kit.submission import build_submission
from arc_kit.vote import load_vote_config, rank_tally, tally

CARD = re.compile(r'<section class="card" data-task="([^"]*)" data-mark="(\w+)"')


def _views(n: int, side: int):
    ts, preds = synthetic(n, side)
    t = tally([parse_prediction(p, "test") for p in preds], ts)
    votes = rank_tally(t, ts, load_vote_config("reference"))
    return ts, task_views(ts, votes, build_submission(votes, ts))


def test_marks_follow_the_votes():
    ts, views = _views(6, 3)
    assert [v.mark for v in views] == ["solved", "found", "unsolved"] * 2
    found = views[1].outputs[0]
    assert found.answer_rank == 4 and found.n_candidates == 4 and len(found.attempts) == 2
    assert [c.votes for c in found.candidates] == [5, 4, 3, 1]
    assert views[0].top_votes == 5 and views[0].solved == 1.0 and views[2].solved == 0.0


def test_unknown_answers_are_unknown_not_unsolved():
    out = OutputView(input=[[1]], attempts=[[[1]], [[0]]], candidates=[CandidateView([[1]], 2.0)], n_candidates=1)
    assert out.mark == "unknown" and TaskView("t", [], [out]).mark == "unknown"


def test_cards_carry_task_ids_and_marks():
    ts, views = _views(9, 4)
    page = build_html(ReportView(title="r", tasks=views))
    cards = CARD.findall(page)
    assert [c[0] for c in cards] == list(ts.tasks)
    assert [c[1] for c in cards] == ["solved", "found", "unsolved"] * 3
    for f in ("all", "solved", "unsolved", "found"):
        assert f'data-filter="{f}"' in page
    assert 'data-sort="votes"' in page and 'data-sort="id"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "<script src" not in page and "<link" not in page  # self-contained


def test_grids_are_stored_once_and_compactly():
    ts, views = _views(3, 3)
    data = page_data(views)
    assert len(data["G"]) == len(set(data["G"]))
    t0 = ts.tasks["00000000"]
    first = data["tasks"][0]["tests"][0]
    assert data["G"][first["answer"]] == "/".join("".join(map(str, r)) for r in t0.test[0].output)
    assert first["attempts"][0] == first["answer"]  # solved: attempt 1 is the answer, the same table entry


def test_escaping_of_ids_titles_and_data():
    nasty = 'a<b>&"c</script>'
    out = OutputView(input=[[1]], attempts=[[[1]], [[1]]], answer=[[1]])
    page = build_html(ReportView(title="<x>", notes=["<script>alert(1)</script>"], tasks=[TaskView(nasty, [], [out])]))
    assert nasty not in page and "<script>alert" not in page
    assert 'data-task="a&lt;b&gt;&amp;&quot;c&lt;/script&gt;"' in page
    data = page.split('id="report-data">')[1].split("</script>")[0]
    assert json.loads(data)["tasks"][0]["id"] == nasty  # the embedded JSON cannot close its script element


def test_arc_agi_2_size_stays_a_few_megabytes():
    _, views = _views(120, 30)
    page = build_html(ReportView(title="big", tasks=views))
    assert len(CARD.findall(page)) == 120
    assert len(page.encode()) < 4_000_000


def test_loss_curve():
    svg = loss_svg([(i, 2.0 / (1 + i)) for i in range(1, 5000)])
    assert svg.startswith("<svg") and "log scale" in svg
    assert len(re.search(r'points="([^"]*)"', svg).group(1).split()) <= 601
    assert "no training metrics" in loss_svg([])


def test_read_losses_continues_across_phases(tmp_path):
    rows = [{"step": s, "loss": 1.0} for s in (10, 20)] + [{"step": s, "loss": 0.5} for s in (10, 20)]
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3')
    assert read_losses(p) == [(10, 1.0), (20, 1.0), (30, 0.5), (40, 0.5)]


def _fake_run(root: Path, ts: TaskSet, preds: list[dict]) -> Path:
    """A finished run directory as `arc-kit run` leaves it (task source with solutions beside it)."""
    ch, sol = write_task_files(root / "data", ts)
    out = root / "run"
    out.mkdir()
    cfg = RunConfig(name="fake")
    cfg.tasks.source, cfg.tasks.solutions = str(ch), str(sol)
    import yaml

    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    (out / "tasks.json").write_text(json.dumps(task_set_to_json(ts)))
    write_predictions(out / "predictions.jsonl", preds)
    state = {"stages": {"train": {"status": "done", "seconds": 12.5, "steps": 40, "loss": 0.5, "threads": 2}}}
    (out / "state.json").write_text(json.dumps(state))
    (out / "plan.json").write_text(json.dumps({"train_steps": 40, "infer_views": 8, "notes": ["a note"]}))
    (out / "ttt").mkdir()
    (out / "ttt" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 3.0 / s}) + "\n" for s in range(1, 41))
    )
    return out


def test_run_directory_report(tmp_path):
    ts, preds = synthetic(6, 5)
    out = _fake_run(tmp_path, ts, preds)
    view = run_view(out)
    assert [t.mark for t in view.tasks] == ["solved", "found", "unsolved"] * 2
    assert view.score is not None and view.score.score_per_task == pytest.approx(1 / 3)
    assert [r.config for r in view.revote] == ["reference", "plurality", "confidence"]
    assert view.stages[0].name == "train" and "40 steps" in view.stages[0].detail
    assert ("note", "a note") in view.plan and len(view.losses) == 40
    assert any(k == "threads" for k, _ in view.facts)
    page = write_run_html(out).read_text()
    assert len(CARD.findall(page)) == 6 and 'id="loss-curve"' in page


def test_run_directory_without_its_task_source_shows_no_answers(tmp_path):
    ts, preds = synthetic(3, 3)
    out = _fake_run(tmp_path, ts, preds)
    (tmp_path / "data" / "x_solutions.json").unlink()
    (tmp_path / "data" / "x_challenges.json").unlink()
    view = run_view(out)
    assert {t.mark for t in view.tasks} == {"unknown"} and view.score is None
    assert any("solutions not loaded" in n for n in view.notes)


def test_cli_report_for_predictions(tmp_path, capsys):
    ts, preds = synthetic(6, 4)
    ch, sol = write_task_files(tmp_path, ts)
    p = write_predictions(tmp_path / "p.jsonl", preds)
    out = tmp_path / "r.html"
    args = ["report", str(p), "--tasks", str(ch), "--solutions", str(sol), "--configs", "reference", "plurality"]
    assert main(args + ["-o", str(out)]) == 0
    assert "2 solved, 2 found, 2 unsolved" in capsys.readouterr().out
    page = out.read_text()
    assert len(CARD.findall(page)) == 6 and "Voting configs side by side" in page and ">plurality<" in page


def test_cli_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.jsonl"), "--tasks", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert main(["report", str(tmp_path)]) == 2  # a directory that is no run
    assert "not a run directory" in capsys.readouterr().err
    p = write_predictions(tmp_path / "p.jsonl", [])
    assert main(["report", str(p)]) == 2
    assert "--tasks" in capsys.readouterr().err


def test_build_report_refuses_to_overwrite_an_input(tmp_path):
    ts, preds = synthetic(3, 3)
    ch, _ = write_task_files(tmp_path, ts)
    p = write_predictions(tmp_path / "p.jsonl", preds)
    with pytest.raises(Exception, match="is one of the inputs"):
        build_report(ReportInputs([str(p)], tasks=str(ch), output=str(p)))
    assert p.read_text().count("\n") == len(preds)


def test_the_end_of_a_run_reuses_its_votes(tmp_path):
    ts, preds = synthetic(6, 5)
    out = _fake_run(tmp_path, ts, preds)
    votes = rank_tally(tally([parse_prediction(p, "t") for p in preds], ts), ts, load_vote_config("reference"))
    (out / "predictions.jsonl").unlink()  # the run's own votes are used: the file is not read again
    view = run_view(out, ts, None, ["reference"], votes)
    assert [t.mark for t in view.tasks] == ["solved", "found", "unsolved"] * 2 and view.revote == []
    assert ("predictions", str(len(preds))) in view.facts
