"""`limit submit` against a small HTTP server on 127.0.0.1 that speaks the Argo server's create-workflow API."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from limit.cli import main as limit_main


class FakeArgoServer(ThreadingHTTPServer):
    """Records every request; answers POST /api/v1/workflows/{namespace} like the Argo server does."""

    def __init__(self, token: str):
        self.token = token
        self.requests: list[dict] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeArgoServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._reply(401, {"code": 16, "message": "token not valid"})
        if self.path.startswith("/api/v1/workflow-templates/"):
            return self._reply(200, body["template"])
        if not self.path.startswith("/api/v1/workflows/"):
            return self._reply(404, {"code": 5, "message": "not found"})
        workflow = json.loads(json.dumps(body["workflow"]))  # the recorded body stays as sent
        workflow["metadata"]["name"] = workflow["metadata"]["generateName"] + "x7k2q"
        self._reply(200, workflow)

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def argo_server(monkeypatch: pytest.MonkeyPatch):
    server = FakeArgoServer(token="s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ARGO_SERVER", server.url)
    monkeypatch.setenv("ARGO_TOKEN", "s3cret")
    yield server
    server.shutdown()
    server.server_close()


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(("limit: error: ", "limit: unavailable (worth retrying): ")) and "\n" not in err, err
    return err


def test_sends_exactly_the_printed_manifest(argo_server: FakeArgoServer, capsys: pytest.CaptureFixture) -> None:
    assert limit_main(["manifest", "tiny", "--profile", "kind"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)

    assert limit_main(["submit", "tiny", "--profile", "kind"]) == 0
    out = capsys.readouterr().out
    [request] = argo_server.requests
    assert request["path"] == "/api/v1/workflows/limit"
    assert request["auth"] == "Bearer s3cret"
    assert request["body"]["workflow"] == printed
    assert "limit-tiny-x7k2q" in out
    assert f"{argo_server.url}/workflows/limit/limit-tiny-x7k2q" in out


def test_template_goes_to_the_workflow_templates_api(argo_server: FakeArgoServer, capsys) -> None:
    assert limit_main(["manifest", "tiny", "--profile", "kind", "--template"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert limit_main(["submit", "tiny", "--profile", "kind", "--template"]) == 0
    [request] = argo_server.requests
    assert request["path"] == "/api/v1/workflow-templates/limit"
    assert request["body"]["template"] == printed
    assert "workflow template limit-tiny " in capsys.readouterr().out


def test_bad_token_message(argo_server: FakeArgoServer, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ARGO_TOKEN", "wrong")
    assert limit_main(["submit", "tiny", "--profile", "kind"]) != 0
    err = one_line_error(capsys)
    assert "401" in err and "ARGO_TOKEN" in err


def test_unreachable_server_fails_cleanly(monkeypatch, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ARGO_SERVER", f"http://127.0.0.1:{port}")
    assert limit_main(["submit", "tiny", "--profile", "kind"]) == 75  # retryable
    assert "cannot reach the Argo server" in one_line_error(capsys)


def test_missing_server_fails_cleanly(monkeypatch, capsys) -> None:
    monkeypatch.delenv("ARGO_SERVER", raising=False)
    assert limit_main(["submit", "tiny", "--profile", "kind"]) != 0
    assert "ARGO_SERVER" in one_line_error(capsys)


def test_invalid_study_submits_nothing(argo_server: FakeArgoServer, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmodels: {}\ndatasets: {}\nruns: []\nsurprise: 1\n")
    assert limit_main(["submit", str(bad), "--profile", "kind"]) == 2
    assert str(bad) in one_line_error(capsys)
    assert argo_server.requests == []


def test_the_placeholder_image_is_warned_of_in_a_manifest_and_never_submitted(argo_server, capsys) -> None:
    assert limit_main(["manifest", "tiny", "--profile", "gpu"]) == 0
    assert "placeholder digest" in capsys.readouterr().err
    assert limit_main(["submit", "tiny", "--profile", "gpu"]) == 2
    assert "placeholder digest" in one_line_error(capsys) and not argo_server.requests
