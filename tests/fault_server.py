"""A local OpenAI-compatible server that injects faults (test double for a real provider).

``POST /v1/chat/completions`` answers like the scripted model (tests/scripted_client.py, mode
``always_right``) unless the current ``mode`` says otherwise:

* ``ok``: 200 with the scripted answer;
* ``500``: 500 server error, every call;
* ``429``: 429 rate limit (``Retry-After: 0``), every call;
* ``stall``: waits ``stall_s`` seconds before answering (a client timeout turns it into a failure);
* ``401``: 401 whose message quotes the request's Authorization header, as real providers do
  ("Incorrect API key provided: Bearer sk-...");
* ``flaky``: 500 for the prompts whose last user message hashes into ``fail_one_in`` (deterministic,
  so the same prompt fails on every retry), 200 for the others.

Every request is counted (``requests``; ``failed``), so tests can compare what reached the provider.
Runs in a thread of the test process; subprocesses reach it over loopback.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from helm.common.cache import BlackHoleCacheConfig
from helm.common.request import Request
from scripted_client import ScriptedClient

MODES = ("ok", "500", "429", "stall", "401", "flaky")
OPENAI_CLIENT = "helm.clients.openai_client.OpenAIClient"


class FaultServer:
    def __init__(
        self,
        answers_path: str | Path,
        mode: str = "ok",
        stall_s: float = 30.0,
        fail_one_in: int = 3,
        delay_s: float = 0.0,
    ):
        self.mode = mode
        self.stall_s = stall_s
        self.fail_one_in = fail_one_in
        self.delay_s = delay_s
        """Every answer, failures included, comes after this many seconds (a slow provider)."""
        self.requests = 0
        self.failed = 0
        self.per_request: dict[str, int] = {}
        """How often each distinct request body (messages and settings) was sent."""
        self.failing_requests: set[str] = set()
        """The distinct request bodies that got an error."""
        self.in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}
        """The most requests for each model (the body's ``model``) that were being answered at once."""
        self._lock = threading.Lock()
        self._scripted = ScriptedClient(BlackHoleCacheConfig(), str(answers_path), mode="always_right")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, payload, headers = server.answer(body, self.headers.get("Authorization", ""))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.failed = 0
            self.per_request.clear()
            self.failing_requests.clear()
            self.peak_in_flight.clear()

    def fails(self, prompt: str) -> bool:
        """Whether ``flaky`` mode fails this prompt (always the same answer for the same prompt)."""
        return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % self.fail_one_in == 0

    def answer(self, body: dict, authorization: str) -> tuple[int, dict, dict]:
        messages = body.get("messages") or []
        last_user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        prompt = " ".join(str(last_user).split())
        key = json.dumps(body, sort_keys=True)
        model = str(body.get("model", ""))
        with self._lock:
            self.requests += 1
            self.per_request[key] = self.per_request.get(key, 0) + 1
            self.in_flight[model] = self.in_flight.get(model, 0) + 1
            self.peak_in_flight[model] = max(self.peak_in_flight.get(model, 0), self.in_flight[model])
        try:
            return self._answer(body, authorization, prompt, key, messages)
        finally:
            with self._lock:
                self.in_flight[model] -= 1

    def _answer(self, body: dict, authorization: str, prompt: str, key: str, messages: list) -> tuple[int, dict, dict]:
        if self.delay_s:
            time.sleep(self.delay_s)
        mode = self.mode
        if mode == "flaky":
            mode = "500" if self.fails(prompt) else "ok"
        if mode == "stall":
            time.sleep(self.stall_s)
            mode = "ok"
        if mode == "ok":
            request = Request(model=str(body.get("model", "fault/model")), messages=messages)
            text = self._scripted.respond(request)
            return 200, completion(text, body), {}
        with self._lock:
            self.failed += 1
            self.failing_requests.add(key)
        if mode == "401":
            message = f"Incorrect API key provided: {authorization}. You can find your API key at the dashboard."
            return 401, error(message, "invalid_request_error", "invalid_api_key"), {}
        if mode == "429":
            return (
                429,
                error("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
                {"Retry-After": "0"},
            )
        return 500, error("The server had an error while processing your request.", "server_error", None), {}


def completion(text: str, body: dict) -> dict:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fault/model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())},
    }


def error(message: str, type_: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def write_fault_deployment(
    prod_env: Path,
    name: str,
    server: FaultServer,
    api_key: str | None = None,
    key_in_args: bool = False,
    timeout: float = 5,
) -> None:
    """Declare ``name`` as HELM's own OpenAIClient pointed at ``server`` (SDK retries off: HELM's are the layer).

    ``key_in_args`` puts the key in the deployment's client_spec args (as model_deployments.yaml allows);
    otherwise it goes to credentials.conf under ``<host>ApiKey``.
    """
    prod_env.mkdir(parents=True, exist_ok=True)
    path = prod_env / "model_deployments.yaml"
    existing = yaml.safe_load(path.read_text())["model_deployments"] if path.exists() else []
    args: dict = {"base_url": server.url, "max_retries": 0, "timeout": timeout}
    if api_key is None:
        args["api_key"] = "no-key"  # OpenAIClient needs one; this server only checks it in mode 401
    elif key_in_args:
        args["api_key"] = api_key
    existing.append({"name": name, "model_name": name, "client_spec": {"class_name": OPENAI_CLIENT, "args": args}})
    path.write_text(yaml.safe_dump({"model_deployments": existing}))
    if api_key and not key_in_args:
        host = name.split("/")[0]
        credentials = prod_env / "credentials.conf"
        previous = credentials.read_text() if credentials.exists() else ""
        credentials.write_text(previous + f'{host}ApiKey: "{api_key}"\n')
