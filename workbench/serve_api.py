"""`workbench serve-api`: the variants behind an OpenAI-compatible `/v1/chat/completions`, so other tools can
evaluate them. `model` is the variant name (`base`, `ft`, `rag`, `ft_rag`); `stream: true` sends server-sent
events. The engine's shared system prompt is used for every variant (a client's system message is ignored, so a
column's prompt stays the one its adapter was trained with). Requests are answered one at a time.

The server faces clients it cannot trust: every request is checked against `limits` before the engine sees it, and
whatever goes wrong ends in an OpenAI-shaped JSON error (`{"error": {"message", "type", "param"}}`) with its 4xx or
500 status, never a dropped connection or a dead server. With API keys set, every request needs one as a bearer
token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import math
import os
import reprlib
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from workbench.config import Config, LimitsConfig
from workbench.data.loaders import BadInputError
from workbench.engine import Engine
from workbench.limits import JSONInputError, parse_json
from workbench.variants import Decoding

KEYS_VARIABLE = "WORKBENCH_API_KEYS"
"""Environment variable with comma-separated API keys, used when no key file is given."""
READ_TIMEOUT_S = 30
"""How long a connection may stall while sending a request (or reading the answer) before it is dropped."""
DRAIN_S = 5
"""How long a refused request's unread body is still read (and dropped), so the client gets the error, not a reset."""
ROLES = ("system", "user", "assistant")
ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 500: "server_error"}


def make_server(
    engine: Engine, host: str = "127.0.0.1", port: int = 8000, keys: Iterable[str] = ()
) -> ThreadingHTTPServer:
    """A server bound to `host:port` (port 0 picks a free one); call `serve_forever()` on it. With `keys`, every
    request must carry one of them as `Authorization: Bearer KEY`."""

    class Handler(_Handler):
        pass

    Handler.engine, Handler.keys = engine, tuple(key.encode() for key in keys)
    return ThreadingHTTPServer((host, port), Handler)


def load_keys(file: str | Path | None = None) -> list[str]:
    """The API keys clients must send: those in `file` (one a line; blank lines and lines starting with `#` are
    skipped) when one is given, else the comma-separated `WORKBENCH_API_KEYS`. No keys: no authentication.

    The file wins over the variable, so a key file named on the command line is never silently widened."""
    if file is None:
        return [key.strip() for key in os.environ.get(KEYS_VARIABLE, "").split(",") if key.strip()]
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"API key file {file}: cannot read it ({exc})") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise BadInputError(f"API key file {file}: holds no keys; write one key a line (# starts a comment)")
    return keys


class RequestError(Exception):
    """A request refused as sent: its HTTP status, the message the client reads, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    keys: tuple[bytes, ...]
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S

    def log_message(self, format: str, *args) -> None:  # quiet: only failures are logged, by `_handle`
        pass

    def do_GET(self) -> None:
        self._handle(self._models)

    def do_POST(self) -> None:
        self._handle(self._completions)

    def _handle(self, route: Callable[[], None]) -> None:
        """Run `route`; a refused request gets its 4xx, anything unexpected a 500 with the detail in the log, and a
        client that went away a closed connection: no failure reaches the server or another request."""
        self._streaming = False
        try:
            try:
                self._authorize()
                route()
            except RequestError as exc:
                self._error(exc.status, str(exc), exc.param)
            except (ConnectionError, TimeoutError):
                raise
            except Exception:  # noqa: BLE001 - any bug in a request must still end in an answer
                print(f"serve-api: {self.command} {self.path} failed:\n{traceback.format_exc()}", file=sys.stderr)
                self._error(500, "internal error while answering; the server's log has the details")
        except (ConnectionError, TimeoutError):  # the client left or stopped reading: nobody to answer
            self.close_connection = True

    def _authorize(self) -> None:
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if self.keys and not (
            scheme.lower() == "bearer" and any(hmac.compare_digest(given.strip().encode(), key) for key in self.keys)
        ):
            raise RequestError(401, "missing or unknown API key: send the header `Authorization: Bearer KEY`")

    def _models(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            raise RequestError(404, f"no route {self.path}; use /v1/models or /v1/chat/completions")
        models = [{"id": name, "object": "model", "owned_by": "workbench"} for name in self.engine.local_variants()]
        self._json(200, {"object": "list", "data": models})

    def _completions(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            raise RequestError(404, f"no route {self.path}; use /v1/chat/completions")
        config = self.engine.config
        body = self._body(config.limits)
        name = _model(body, self.engine.local_variants(), self.engine.missing)
        history, question = _messages(body.get("messages"), config.limits)
        decoding = _decoding(body, config)
        stream, include_usage = _stream_options(body)
        with contextlib.closing(self.engine.stream(question, [name], {name: history}, decoding)) as events:
            if stream:  # a client that leaves mid-answer ends the write with an error: closing stops the engine
                self._stream(name, events, include_usage)
            else:
                self._json(200, _completion(name, next(e.answer for e in events if e.done)))

    def _body(self, limits: LimitsConfig) -> dict:
        """The request's JSON object, read only once its declared size is within `limits.body_bytes`."""
        length = _content_length(self.headers, limits.body_bytes)
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(408, f"the body did not arrive within {self.timeout} s") from None
        if len(data) < length:
            raise RequestError(400, f"the body ended after {len(data)} of its {length} bytes (Content-Length)")
        try:
            body = parse_json(data, limits.json_depth)
        except JSONInputError as exc:
            raise RequestError(400, f"body: {exc} (limits.json_depth is {limits.json_depth})") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"the body must be a JSON object, got {reprlib.repr(body)}")
        return body

    def _stream(self, name: str, events, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection, self._streaming = True, True
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

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, param: str | None = None) -> None:
        """The error as JSON, or as the last event once a stream has begun. The connection closes after it: the
        body may be unread, and the next bytes on it would be taken for a request."""
        self.close_connection = True
        error = {
            "error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"), "param": param}
        }
        if self._streaming:
            return self._event(error)
        self._json(status, error, {"Connection": "close"} | ({"WWW-Authenticate": "Bearer"} if status == 401 else {}))
        self._drain()

    def _drain(self) -> None:
        """Drop what the client still sends, for `DRAIN_S` at most, before the connection closes: closing with bytes
        unread resets it, and a client that sends its whole body before reading (most do) would see the reset and
        never this error."""
        self.connection.settimeout(1)
        deadline = time.monotonic() + DRAIN_S
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and self.rfile.read1(1 << 16):
                pass


def _content_length(headers, limit: int) -> int:
    """The declared body size, checked before a byte of the body is read, so no client can make the server wait
    for a body it never announced or hold one larger than `limit`."""
    if "Transfer-Encoding" in headers:
        raise RequestError(411, "Transfer-Encoding is not accepted; send the body with a Content-Length")
    values = [value.strip() for value in headers.get_all("Content-Length") or []]
    if not values:
        raise RequestError(411, "Content-Length is required")
    if len(values) > 1 or not (values[0].isascii() and values[0].isdigit()):
        raise RequestError(400, f"Content-Length must be one whole number of bytes, got {', '.join(values)!r}")
    if int(values[0]) > limit:
        raise RequestError(413, f"the body is {values[0]} bytes; at most {limit} are accepted (limits.body_bytes)")
    return int(values[0])


def _model(body: dict, variants: list[str], missing: dict[str, str]) -> str:
    name = body.get("model")
    if isinstance(name, str) and name in missing:  # a known variant whose adapter or index is absent or broken
        raise RequestError(404, f"model {name} is not available: {missing[name]}", "model")
    if not isinstance(name, str) or name not in variants:
        raise RequestError(400, f"model must be one of {', '.join(variants)}; got {reprlib.repr(name)}", "model")
    return name


def _messages(messages: object, limits: LimitsConfig) -> tuple[list[dict], str]:
    """(earlier turns, question): every message checked and bounded, system messages dropped (each variant
    answers with the engine's system prompt), at most `limits.history_turns` question-answer pairs before."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, f"messages must be a non-empty list, got {reprlib.repr(messages)}", "messages")
    for i, message in enumerate(messages):
        _check_message(f"messages[{i}]", message, limits.question_chars)
    if messages[-1]["role"] != "user":
        raise RequestError(400, "messages must end with a user message (the question)", "messages")
    history = [{"role": m["role"], "content": m["content"]} for m in messages[:-1] if m["role"] != "system"]
    if len(history) > 2 * limits.history_turns:
        raise RequestError(
            400,
            f"messages hold {len(history)} earlier user and assistant messages; at most {2 * limits.history_turns} "
            f"are accepted (limits.history_turns = {limits.history_turns} turns of a question and its answer)",
            "messages",
        )
    return history, messages[-1]["content"]


def _check_message(where: str, message: object, most_chars: int) -> None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise RequestError(
            400,
            f"{where} must be an object with role system, user or assistant, got {reprlib.repr(message)}",
            "messages",
        )
    content = message.get("content")
    if not isinstance(content, str):
        raise RequestError(400, f"{where}.content must be a string, got {reprlib.repr(content)}", "messages")
    if len(content) > most_chars:
        raise RequestError(
            400,
            f"{where}.content is {len(content)} characters; at most {most_chars} are accepted (limits.question_chars)",
            "messages",
        )


def _decoding(body: dict, config: Config) -> Decoding:
    """The configured decoding with the request's settings over it, each checked, so the sampler never sees a value
    it cannot use (a NaN temperature, a seed out of a generator's range, a zero-token answer)."""
    most = config.limits.max_new_tokens
    expected = f"an integer from 1 to {most} (limits.max_new_tokens)"
    newer, older = (
        _option(body, key, lambda v: _integer(v, 1, most), expected) for key in ("max_completion_tokens", "max_tokens")
    )
    settings = {
        "max_new_tokens": newer or older,
        "temperature": _option(body, "temperature", lambda v: _number(v) and v >= 0, "a finite number >= 0"),
        "top_p": _option(body, "top_p", lambda v: _number(v) and 0 < v <= 1, "a number above 0 and at most 1"),
        "seed": _option(body, "seed", lambda v: _integer(v, 0, 2**63 - 1), "an integer from 0 to 2**63 - 1"),
    }
    given = {key: value for key, value in settings.items() if value is not None}
    return dataclasses.replace(Decoding.from_config(config.chat), **given)


def _stream_options(body: dict) -> tuple[bool, bool]:
    """(stream, include usage in the last event)."""
    stream = _option(body, "stream", lambda v: isinstance(v, bool), "true or false")
    options = _option(body, "stream_options", lambda v: isinstance(v, dict), "an object") or {}
    return bool(stream), options.get("include_usage") is True


def _option(body: dict, key: str, valid: Callable[[object], bool], expected: str):
    """`body[key]`, None when absent or null; a value that is not `valid` is a 400 saying what is `expected`."""
    value = body.get(key)
    if value is None or valid(value):
        return value
    raise RequestError(400, f"{key} must be {expected}, got {reprlib.repr(value)}", key)


def _integer(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
