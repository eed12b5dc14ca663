"""OpenAI-compatible judge servers on 127.0.0.1, speaking the chat-completions wire protocol.

`JudgeServer` answers `POST /v1/chat/completions` with whatever its `answer` policy decides for the pair it
was shown (it reads the instruction and both outputs back out of alpaca-eval's ranking prompt).
`ReplayJudgeServer` answers as GPT-4 did in the LIMIT authors' files: it looks the pair up in either order
and ranks the preferred output first, so alpaca-eval's position randomization is exercised for real; a pair
it has no record of gets its `fallback` policy's answer (a study whose judge is calibrated on the release and
then judges its own models' responses), or, without one, an unrankable answer counted in `missing`.
Tests build other policies (always prefer the first output, garbage, HTTP 500/429).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from limit.judge.ranking import FIRST_WINS, SECOND_WINS, user_message_pattern
from limit.judge.winrate import TIE, WIN_A, WIN_B, normalize_preference


@dataclass
class Reply:
    """What the server sends: an assistant message (status 200) or an OpenAI-style error."""

    content: str = ""
    status: int = 200
    error: str = ""


Policy = Callable[[str, str, str], Reply]  # (instruction, shown output_1, shown output_2) -> Reply


class JudgeServer:
    def __init__(self, policy: Policy, model: str = "gpt-4-0613", annotator: str = "alpaca_eval_gpt4_0613"):
        self.policy = policy
        self.model = model
        self.pattern = user_message_pattern(annotator)
        self.requests = 0
        self.unparsed = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> JudgeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests += 1
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"unknown path {self.path}", "type": "not_found"}})
                reply = server.reply(body)
                if reply.status != 200:
                    kind = "rate_limit_exceeded" if reply.status == 429 else "server_error"
                    return self._send(reply.status, {"error": {"message": reply.error, "type": kind, "code": kind}})
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                completion_tokens = len(reply.content.split())
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", server.model),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": "stop",
                                "logprobs": None,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # keep test and command output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def reply(self, body: dict) -> Reply:
        user = next((m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"), "")
        match = self.pattern.fullmatch(user)
        if not match:
            with self._lock:
                self.unparsed += 1
            return Reply("I can only rank alpaca-eval ranking prompts.")
        return self.policy(*match.groups())

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _key(instruction, output_a, output_b) -> tuple[str, str, str]:
    # alpaca-eval turns its primary keys into strings and the chat message is stripped as a whole
    return (str(instruction or "").strip(), str(output_a or ""), str(output_b or ""))


class ReplayJudgeServer(JudgeServer):
    """Answers each ranking request as recorded: rows {instruction, output_1, output_2, preference}."""

    def __init__(self, rows: list[dict] | None = None, model: str = "gpt-4-0613", fallback: Policy | None = None):
        super().__init__(self._replay, model)
        self.table: dict[tuple[str, str, str], float | None] = {}
        self.fallback = fallback
        self.missing = 0
        self.shown_swapped = 0  # pairs alpaca-eval showed with B first: proof the randomization ran
        if rows:
            self.load(rows)

    def load(self, rows: list[dict]) -> None:
        """Replace the recorded judgments (one comparison and seed at a time keeps lookups unambiguous)."""
        self.table = {
            _key(r["instruction"], r["output_1"], r["output_2"]): normalize_preference(r["preference"]) for r in rows
        }

    def _replay(self, instruction: str, shown_1: str, shown_2: str) -> Reply:
        instruction = instruction.strip()
        if (key := (instruction, shown_1, shown_2)) in self.table:
            pref = self.table[key]
        elif (key := (instruction, shown_2, shown_1)) in self.table:
            pref = self.table[key]
            pref = {WIN_A: WIN_B, WIN_B: WIN_A}.get(pref, pref)  # recorded with the outputs the other way round
            with self._lock:
                self.shown_swapped += 1
        elif self.fallback is not None:
            return self.fallback(instruction, shown_1, shown_2)
        else:
            with self._lock:
                self.missing += 1
            return Reply("This pair was never judged.")
        if pref == WIN_A:
            return Reply(FIRST_WINS)
        if pref == WIN_B:
            return Reply(SECOND_WINS)
        if pref == TIE:  # GPT-4's ranking prompt cannot tie distinct outputs; the record says it failed to rank
            return Reply("Both answers are equally good.")
        return Reply("I am unable to rank these outputs.")  # a recorded failure stays a failure
