"""OpenAIChatPolicy against a real local HTTP server speaking the /v1/chat/completions format."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent_rl.policy.base import PolicyRequest
from agent_rl.policy.http import OpenAIChatPolicy, PolicyHTTPError, render_messages


@dataclass
class FakeChatServer:
    """Answers each chat completion with a JSON echo of what it was sent, unless a reply is scripted."""

    base_url: str = ""
    scripted: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)  # served first, in order
    delays: dict[str, float] = field(default_factory=dict)  # last message content -> seconds to wait
    received: list[dict[str, Any]] = field(default_factory=list)  # {"path", "auth", "body"} per request
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, auth: str | None, raw: bytes) -> tuple[int, bytes, dict[str, str]]:
        body = json.loads(raw)
        with self._lock:
            self.received.append({"path": path, "auth": auth, "body": body})
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            reply = self.scripted.pop(0) if self.scripted else None
        try:
            time.sleep(self.delays.get(body["messages"][-1]["content"], 0.0))
            if reply is not None:
                return reply
            echo = {key: body.get(key) for key in ("model", "messages", "temperature", "max_tokens", "stop")}
            message = {"role": "assistant", "content": json.dumps(echo)}
            return 200, json.dumps({"choices": [{"index": 0, "message": message}]}).encode(), {}
        finally:
            with self._lock:
                self._in_flight -= 1


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    fake = FakeChatServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            status, payload, headers = fake.handle(self.path, self.headers.get("Authorization"), raw)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield fake
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def ask(content: str) -> PolicyRequest:
    system = {"role": "system", "content": "You play a game."}
    return PolicyRequest(messages=[system, {"role": "user", "content": content}])


def error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


def test_request_is_sent_in_openai_format(server: FakeChatServer) -> None:
    request = ask("look")
    with OpenAIChatPolicy(
        server.base_url + "/",
        "qwen-1.5b",
        api_key="sk-test",
        temperature=0.7,
        max_tokens=64,
        stop=["</action>"],
    ) as policy:
        [output] = policy.act([request])
    assert json.loads(output.text) == {
        "model": "qwen-1.5b",
        "messages": request.messages,
        "temperature": 0.7,
        "max_tokens": 64,
        "stop": ["</action>"],
    }
    assert server.received[0]["path"] == "/v1/chat/completions"
    assert server.received[0]["auth"] == "Bearer sk-test"
    assert output.prompt_text == render_messages(request.messages)
    assert output.prompt_text == "[system]\nYou play a game.\n\n[user]\nlook"
    # text only: this policy evaluates, it does not feed the trainer
    assert (output.prompt_ids, output.token_ids, output.logprobs) == ([], [], [])


@pytest.mark.parametrize("env_key, expected", [("sk-env", "Bearer sk-env"), (None, None)])
def test_api_key_from_environment(
    server: FakeChatServer, monkeypatch: pytest.MonkeyPatch, env_key: str | None, expected: str | None
) -> None:
    if env_key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", env_key)
    with OpenAIChatPolicy(server.base_url, "m") as policy:
        policy.act([ask("look")])
    assert server.received[0]["auth"] == expected
    assert "stop" not in server.received[0]["body"]  # not sent unless configured


def test_concurrent_batch_keeps_request_order(server: FakeChatServer) -> None:
    contents = [f"q{i}" for i in range(8)]
    # later requests finish first, so completion order is the reverse of request order
    server.delays = {c: 0.02 * (len(contents) - i) for i, c in enumerate(contents)}
    with OpenAIChatPolicy(server.base_url, "m", max_concurrency=4) as policy:
        outputs = policy.act([ask(c) for c in contents])
    assert [json.loads(o.text)["messages"][-1]["content"] for o in outputs] == contents
    assert 1 < server.max_in_flight <= 4


@pytest.mark.parametrize(
    "failures",
    [[(503, b"overloaded", {})], [(429, error_body("rate limited"), {"Retry-After": "0"}), (502, b"", {})]],
    ids=["503", "429-then-502"],
)
def test_transient_errors_are_retried(server: FakeChatServer, failures: list) -> None:
    server.scripted = list(failures)
    with OpenAIChatPolicy(server.base_url, "m", max_retries=2, retry_backoff=0.0) as policy:
        [output] = policy.act([ask("look")])
    assert json.loads(output.text)["model"] == "m"
    assert len(server.received) == len(failures) + 1


def test_retries_run_out(server: FakeChatServer) -> None:
    server.scripted = [(503, error_body("model is loading"), {})] * 3
    with (
        OpenAIChatPolicy(server.base_url, "m", max_retries=2, retry_backoff=0.0) as policy,
        pytest.raises(PolicyHTTPError) as err,
    ):
        policy.act([ask("look")])
    assert (err.value.status, err.value.attempts, err.value.message) == (503, 3, "model is loading")
    assert len(server.received) == 3


def test_permanent_error_names_url_status_and_message(server: FakeChatServer) -> None:
    server.scripted = [(400, error_body("The model `nope` does not exist."), {})]
    with (
        OpenAIChatPolicy(server.base_url, "nope", retry_backoff=0.0) as policy,
        pytest.raises(PolicyHTTPError) as err,
    ):
        policy.act([ask("look")])
    assert str(err.value) == (
        f"POST {server.base_url}/chat/completions failed (HTTP 400, 1 attempt(s)): The model `nope` does not exist."
    )
    assert len(server.received) == 1  # a client error is not retried


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b'{"choices": []}', b'{"choices": [{"message": {"role": "assistant"}}]}'],
    ids=["not-json", "no-choices", "no-content"],
)
def test_malformed_response(server: FakeChatServer, body: bytes) -> None:
    server.scripted = [(200, body, {})]
    with (
        OpenAIChatPolicy(server.base_url, "m") as policy,
        pytest.raises(PolicyHTTPError, match=r"HTTP 200.*malformed chat completion") as err,
    ):
        policy.act([ask("look")])
    assert server.base_url in str(err.value)


def test_null_content_is_an_empty_answer(server: FakeChatServer) -> None:
    server.scripted = [(200, b'{"choices": [{"message": {"role": "assistant", "content": null}}]}', {})]
    with OpenAIChatPolicy(server.base_url, "m") as policy:
        assert policy.act([ask("look")])[0].text == ""


def test_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with (
        OpenAIChatPolicy(url, "m", max_retries=1, retry_backoff=0.0) as policy,
        pytest.raises(PolicyHTTPError, match=r"ConnectError") as err,
    ):
        policy.act([ask("look")])
    assert (err.value.url, err.value.status, err.value.attempts) == (f"{url}/chat/completions", None, 2)
