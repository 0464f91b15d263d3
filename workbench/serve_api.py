"""`workbench serve-api`: the variants behind an OpenAI-compatible `/v1/chat/completions`, so other tools can
evaluate them. `model` is the variant name (`base`, `ft`, `rag`, `ft_rag`); `stream: true` sends server-sent
events. The engine's shared system prompt is used for every variant (a client's system message is ignored, so a
column's prompt stays the one its adapter was trained with). Requests are answered one at a time.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workbench.engine import Engine
from workbench.variants import Decoding, VariantUnavailable


def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server bound to `host:port` (port 0 picks a free one); call `serve_forever()` on it."""

    class Handler(_Handler):
        pass

    Handler.engine = engine
    return ThreadingHTTPServer((host, port), Handler)


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet: the CLI prints one line per request instead
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"no route {self.path}; use /v1/models or /v1/chat/completions")
        models = [{"id": name, "object": "model", "owned_by": "workbench"} for name in self.engine.local_variants()]
        self._json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}; use /v1/chat/completions")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            name, history, question, decoding = self._parse(body)
        except (ValueError, TypeError, KeyError) as exc:
            return self._error(400, str(exc))
        try:
            events = self.engine.stream(question, [name], {name: history}, decoding)
            if body.get("stream"):
                self._stream(name, events, bool((body.get("stream_options") or {}).get("include_usage")))
            else:
                answer = next(e.answer for e in events if e.done)
                self._json(200, _completion(name, answer))
        except VariantUnavailable as exc:
            self._error(404, str(exc))

    def _parse(self, body: dict):
        name = body.get("model")
        if name not in self.engine.local_variants():
            raise ValueError(f"model must be one of {self.engine.local_variants()}, got {name!r}")
        messages = [m for m in body.get("messages") or [] if m.get("role") != "system"]
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("messages must end with a user message")
        history = [{"role": m["role"], "content": str(m["content"])} for m in messages[:-1]]
        chat = self.engine.config.chat
        decoding = dataclasses.replace(
            Decoding.from_config(chat),
            max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or chat.max_new_tokens),
            temperature=float(body.get("temperature", chat.temperature)),
            top_p=float(body.get("top_p", chat.top_p)),
            seed=int(body.get("seed", chat.seed)),
        )
        if decoding.max_new_tokens < 1 or decoding.temperature < 0 or not 0 < decoding.top_p <= 1:
            raise ValueError("max_tokens must be >= 1, temperature >= 0 and 0 < top_p <= 1")
        return name, history, str(messages[-1]["content"]), decoding

    def _stream(self, name: str, events, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        created, sent, ident = int(time.time()), "", f"chatcmpl-{uuid.uuid4().hex}"
        for event in events:
            delta = event.text[len(sent) :] if event.text.startswith(sent) else ""
            if delta:
                sent += delta
                self._event(_chunk(name, created, ident, {"content": delta}, None))
            if event.done:
                answer = event.answer
                self._event(_chunk(name, created, ident, {}, _finish(answer)))
                if include_usage:
                    self._event(_chunk(name, created, ident, None, None) | {"usage": _usage(answer)})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, payload: dict) -> None:
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status == 400 else "not_found_error"
        self._json(status, {"error": {"message": message, "type": kind}})


def _finish(answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


def _usage(answer) -> dict:
    return {
        "prompt_tokens": answer.tokens_in,
        "completion_tokens": answer.tokens_out,
        "total_tokens": answer.tokens_in + answer.tokens_out,
    }


def _chunk(name: str, created: int, ident: str, delta: dict | None, finish: str | None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name, "choices": choices}


def _completion(name: str, answer) -> dict:
    return {
        "id": f"chatcmpl-{answer.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": _finish(answer)}
        ],
        "usage": _usage(answer),
        "workbench": {"chunk_ids": answer.chunk_ids, "ttft_s": answer.ttft_s, "total_s": answer.total_s},
    }
