"""A Hugging Face hub on 127.0.0.1 for tests: `/{repo}/resolve/{revision}/{path}` plus an LFS CDN on another port."""

# What huggingface_hub's hf_hub_url / get_hf_file_metadata / http_get expect (file_download.py):
# - HEAD /{repo}/resolve/{rev}/{path}: an LFS file answers 302 to the CDN (another origin, so the client
#   stops there) with X-Repo-Commit, X-Linked-Etag (the sha256) and X-Linked-Size; a git file answers
#   200 with ETag (its git blob sha1), Content-Length and X-Repo-Commit. Unknown: 404 + X-Error-Code.
# - GET on the file's location, with `Range: bytes=N-` when resuming: 206 + Content-Range.

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True
    corrupt: bool = False  # serve one flipped byte while the metadata names the true sha256

    @property
    def etag(self) -> str:
        if self.lfs:
            return hashlib.sha256(self.data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class Behaviour:
    drop_after: int | None = None  # the next full CDN GET closes the connection after this many bytes
    stall_after: int | None = None  # the next full CDN GET sends this many bytes, then waits for `release`
    fail_status: int | None = None  # the next CDN GET answers this HTTP status (an expired signed URL: 403)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FakeHub:
    """`with FakeHub(repo, {path: HubFile}) as hub:` then point HF_ENDPOINT (or `endpoint=`) at hub.url."""

    def __init__(self, repo: str, files: dict[str, HubFile], revision: str = "main"):
        self.repo, self.files, self.revision = repo, files, revision
        self.requests: list[tuple[str, str, str, str | None]] = []  # (server, method, path, Range header)
        self.behaviour = Behaviour()
        self.lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("hub"))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("cdn"))
        for s in (self._hub, self._cdn):
            s.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._hub.server_port}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_port}"

    def __enter__(self):
        for s in (self._hub, self._cdn):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.behaviour.release.set()
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()

    def ranges(self) -> list[str]:
        return [r for _, m, _, r in self.requests if m == "GET" and r]

    def _handler(self, server: str):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._answer(head=True)

            def do_GET(self):
                self._answer(head=False)

            def _send(self, status: int, headers: dict, body: bytes = b"", head: bool = False):
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def end_headers(self):
                # one request per connection: a stopped FakeHub must refuse, not answer on a pooled connection
                self.send_header("Connection", "close")
                self.close_connection = True
                super().end_headers()

            def _answer(self, head: bool):
                with hub.lock:
                    hub.requests.append((server, self.command, self.path, self.headers.get("Range")))
                if server == "cdn":
                    if self.command == "GET" and hub.behaviour.fail_status:
                        status, hub.behaviour.fail_status = hub.behaviour.fail_status, None
                        return self._send(status, {}, b"refused", head)
                    sha = self.path.rsplit("/", 1)[-1]
                    f = next((f for f in hub.files.values() if f.lfs and f.etag == sha), None)
                    if f is None:
                        return self._send(404, {}, b"no such blob", head)
                    return self._body(f, head)
                prefix = f"/{hub.repo}/resolve/{hub.revision}/"
                path = self.path[len(prefix) :] if self.path.startswith(prefix) else None
                f = hub.files.get(path) if path is not None else None
                if f is None:
                    code = "EntryNotFound" if path is not None else "RevisionNotFound"
                    return self._send(404, {"X-Error-Code": code, "X-Repo-Commit": COMMIT}, b"not found", head)
                common = {"X-Repo-Commit": COMMIT}
                if f.lfs:
                    return self._send(
                        302,
                        {
                            **common,
                            "Location": f"{hub.cdn_url}/blobs/{f.etag}",
                            "X-Linked-Etag": f'"{f.etag}"',
                            "X-Linked-Size": str(len(f.data)),
                            "ETag": '"redirect"',
                        },
                        b"",
                        head,
                    )
                return self._body(f, head, {**common, "ETag": f'"{f.etag}"'})

            def _body(self, f: HubFile, head: bool, extra: dict | None = None):
                data = bytearray(f.data)
                if f.corrupt:
                    data[len(data) // 2] ^= 0xFF
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                headers = dict(extra or {}, **{"Accept-Ranges": "bytes"})
                if start:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = bytes(data[start:])
                self.send_response(206 if start else 200)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                if head:
                    return
                b = hub.behaviour
                if server == "hub":
                    self.wfile.write(body)
                    return
                if not start and b.drop_after is not None:
                    n, b.drop_after = b.drop_after, None
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if not start and b.stall_after is not None:
                    n, b.stall_after = b.stall_after, None
                    self.wfile.write(body[:n])
                    self.wfile.flush()
                    b.stalled.set()
                    b.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler


def reference_release(directory, rows: int, repo: str = "test/fake-trm"):
    """A fake published release in the reference format: the trm-reference fixture's weights (step_0, keys under
    `_orig_mod.model.inner.`) with a puzzle table of `rows` rows, its all_config.yaml, a compact identifier list
    of `rows` names and a preset YAML naming them. Returns (files for FakeHub, preset path, names, table)."""
    import itertools
    from pathlib import Path

    import torch

    from arc_kit.shipped_identifiers import write_identifier_file

    ref = Path(__file__).resolve().parent / "fixtures" / "trm-reference"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sd = torch.load(ref / "step_0", map_location="cpu", weights_only=True)
    key = next(k for k in sd if k.endswith("puzzle_emb.weights"))
    table = torch.randn(rows, sd[key].shape[1], generator=torch.Generator().manual_seed(rows))
    sd[key] = table
    step = directory / "step_7"
    torch.save(sd, step)
    perms = itertools.permutations("123456789")
    names = ["<blank>"] + [
        f"task{i // 50:04d}" if i % 50 == 0 else f"task{i // 50:04d}|||t{i % 8}|||0{''.join(next(perms))}"
        for i in range(rows - 1)
    ]
    ids = directory / "ids.npz"
    write_identifier_file(ids, names)
    files = {
        "v1/step_7": HubFile(step.read_bytes()),
        "v1/all_config.yaml": HubFile((ref / "all_config.yaml").read_bytes(), lfs=False),
    }
    preset = directory / "fake.yaml"
    preset.write_text(
        f"repo: {repo}\nrevision: main\ncheckpoint: v1/step_7\nconfig: v1/all_config.yaml\n"
        f"size: {len(files['v1/step_7'].data)}\nidentifiers: {ids}\n"
    )
    return files, preset, names, table


def quiet_agent_registry(monkeypatch, tmp_path) -> None:
    """huggingface_hub's user-agent code fetches an "agent harness" list once a process from the endpoint it saw
    at import (best effort, 3 s timeout), which may be the real hub: hand it an empty list so no test reaches
    for the internet."""
    import json

    import huggingface_hub.constants
    import huggingface_hub.utils._detect_agent as agent

    empty = {"standardEnvVars": [], "harnesses": {}}
    (tmp_path / "agent-harnesses.json").write_text(json.dumps(empty))
    monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent-harnesses.json"))
    monkeypatch.setattr(agent, "_registry", empty, raising=False)
