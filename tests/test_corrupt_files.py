"""Property test: randomly corrupted task, predictions and submission files given to `tasks`, `vote`, `validate`
and `score` never crash: each run ends in success (or validate's documented exit 1) or in exit 2 with exactly one
`error:` line, never a traceback, and no input file is changed."""

import contextlib
import hashlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arc_kit.cli.main import main

GRID = [[1, 2, 3], [4, 5, 6]]
TASKS = {
    "aa": {"train": [{"input": GRID, "output": [[6, 5, 4], [3, 2, 1]]}], "test": [{"input": GRID}]},
    "bb": {
        "train": [{"input": [[0]], "output": [[1]]}, {"input": [[2]], "output": [[3]]}],
        "test": [{"input": [[4]]}, {"input": [[5, 5]]}],
    },
}
SOLUTIONS = {"aa": [[[6, 5, 4], [3, 2, 1]]], "bb": [[[5]], [[6, 6]]]}
PREDICTIONS = [
    {"task_id": "aa", "test_index": 0, "augmentation": "aa", "grid": [[6, 5, 4], [3, 2, 1]], "q_halt": 0.5},
    {
        "task_id": "bb",
        "test_index": 1,
        "augmentation": "bb|||t1|||0123456789",
        "grid": [[6, 6]],
        "q_halt": -1.0,
        "weight": 2.0,
    },
]
SUBMISSION = {
    "aa": [{"attempt_1": [[6, 5, 4], [3, 2, 1]], "attempt_2": GRID}],
    "bb": [{"attempt_1": [[5]], "attempt_2": [[0]]}, {"attempt_1": [[6, 6]], "attempt_2": [[0]]}],
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


def _mutate(obj, data):
    """Replace one value somewhere in `obj` (a copy) by a random JSON value, or delete/duplicate a key."""
    if isinstance(obj, (dict, list)) and obj and data.draw(st.booleans()):
        keys = list(obj) if isinstance(obj, dict) else list(range(len(obj)))
        k = data.draw(st.sampled_from(keys))
        obj = dict(obj) if isinstance(obj, dict) else list(obj)
        action = data.draw(st.sampled_from(["descend", "descend", "delete", "replace"]))
        if action == "delete":
            del obj[k]
        elif action == "replace":
            obj[k] = data.draw(json_values)
        else:
            obj[k] = _mutate(obj[k], data)
        return obj
    return data.draw(json_values)


def _corrupt_text(text: str, data) -> str:
    """Byte-level damage: truncation, a stray or missing character, a duplicated key, deep nesting."""
    kind = data.draw(st.sampled_from(["truncate", "insert", "delete", "dupkey", "nest", "binary"]))
    if kind == "truncate":
        return text[: data.draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "insert":
        i = data.draw(st.integers(0, len(text)))
        return text[:i] + data.draw(st.sampled_from(list('{}[],:"0-9e. \n\\'))) + text[i:]
    if kind == "delete" and text:
        i = data.draw(st.integers(0, len(text) - 1))
        return text[:i] + text[i + 1 :]
    if kind == "dupkey" and text.startswith("{"):
        first = text[1:].split(":", 1)[0]
        return "{" + first + ": 1, " + text[1:]
    if kind == "nest":
        n = data.draw(st.sampled_from([5_000, 100_000]))
        return "[" * n + "]" * n
    return "\udcff" if kind == "binary" else text


def _corrupted(obj, data, jsonl: bool = False) -> str | bytes:
    if data.draw(st.booleans()):
        obj = _mutate(obj, data)
        text = "".join(json.dumps(o) + "\n" for o in obj) if jsonl and isinstance(obj, list) else json.dumps(obj)
        return text
    text = "".join(json.dumps(o) + "\n" for o in obj) if jsonl else json.dumps(obj)
    return _corrupt_text(text, data)


def _write(path: Path, content) -> None:
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
    else:
        path.write_bytes(content)


def _run(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, err.getvalue()


def _hashes(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


COMMANDS = {
    "tasks": lambda: ["tasks", "t_challenges.json", "--json"],
    "tasks-lenient": lambda: ["tasks", "t_challenges.json", "--lenient"],
    "vote": lambda: ["vote", "p.jsonl", "--tasks", "t_challenges.json", "-o", "out.json"],
    "validate": lambda: ["validate", "sub.json", "--tasks", "t_challenges.json"],
    "score": lambda: ["score", "sub.json", "--tasks", "t_challenges.json"],
    "score-predictions": lambda: ["score", "p.jsonl", "--tasks", "t_challenges.json", "--json"],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    command=st.sampled_from(sorted(COMMANDS)), target=st.sampled_from(["tasks", "solutions", "input"]), data=st.data()
)
def test_corrupted_files_give_one_error_line(command, target, data):
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        d = Path(tmp)
        files = {"t_challenges.json": TASKS, "t_solutions.json": SOLUTIONS, "sub.json": SUBMISSION}
        contents = {name: json.dumps(obj) for name, obj in files.items()}
        contents["p.jsonl"] = "".join(json.dumps(p) + "\n" for p in PREDICTIONS)
        if target == "tasks":
            contents["t_challenges.json"] = _corrupted(TASKS, data)
        elif target == "solutions":
            contents["t_solutions.json"] = _corrupted(SOLUTIONS, data)
        elif "p.jsonl" in COMMANDS[command]():
            contents["p.jsonl"] = _corrupted(PREDICTIONS, data, jsonl=True)
        else:
            contents["sub.json"] = _corrupted(SUBMISSION, data)
        for name, content in contents.items():
            _write(d / name, content)
        before = _hashes(d)
        rc, err = _run(COMMANDS[command]())
        errors = [line for line in err.splitlines() if "error:" in line]
        assert "Traceback" not in err and "internal error" not in err, err
        allowed = (0, 1, 2) if command == "validate" else (0, 2)
        assert rc in allowed, (rc, err)
        if rc == 2:
            assert len(errors) == 1 and errors[0].startswith("error: "), err
        after = _hashes(d)
        if rc == 0 and command == "vote":
            after.pop("out.json")
        assert after == before
