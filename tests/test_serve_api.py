"""`workbench serve-api` facing bad clients: every bad request is a clear JSON error with its status, a failing or
abandoned request leaves the server serving, and API keys are enforced. All through real HTTP against a server on a
free port, answering with a tiny random-init model (the text is meaningless; the statuses and limits are the point).
"""

import http.client
import json
import threading
import time

import pytest

from workbench.cli import main
from workbench.config import Config
from workbench.data.loaders import BadInputError
from workbench.engine import Engine
from workbench.serve_api import load_keys, make_server

PATH = "/v1/chat/completions"
ASK = {"model": "base", "messages": [{"role": "user", "content": "Hi?"}]}
LIMITS = {"question_chars": 200, "history_turns": 1, "max_new_tokens": 300}


@pytest.fixture(scope="module")
def config_file(tiny_llama_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve_api") / "tiny.yaml"
    chat = {"max_new_tokens": 4, "stop_on_repeat": False}
    path.write_text(json.dumps({"model": {"base": str(tiny_llama_folder)}, "chat": chat, "limits": LIMITS}))
    return path


@pytest.fixture(scope="module")
def engine(config_file):
    return Engine(Config.model_validate(json.loads(config_file.read_text())))  # base only: no run, no index


def _serving(engine, keys=()):
    server = make_server(engine, "127.0.0.1", 0, keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def port(engine):
    server = _serving(engine)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def locked_port(engine):
    server = _serving(engine, ["first-key", "second-key"])
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _send(port, method, path, body=b"", headers=None, timeout=10):
    """(status, headers, JSON reply) of one request sent with exactly `headers` (nothing added, not even a length)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        conn.close()


def _post(port, payload, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return _send(port, "POST", PATH, body, {"Content-Length": str(len(body)), **(headers or {})})


def assert_refused(reply, status, fragment, expected_status):
    assert status == expected_status, reply
    assert reply["error"]["type"] == ("invalid_request_error" if status != 401 else "authentication_error")
    assert fragment in reply["error"]["message"], reply


def _messages(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


BAD_BODIES = {
    "not an object": (b"[1,2]", "must be a JSON object"),
    "not JSON": (b'{"model": ', "not valid JSON"),
    "not UTF-8": (b'{"model": "\xff"}', "not UTF-8"),
    "nested 5000 deep": (b'{"model": "base", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    "unknown model": (ASK | {"model": "nope"}, "model must be one of base; got 'nope'"),
    "messages a string": (ASK | {"messages": "hi"}, "messages must be a non-empty list, got 'hi'"),
    "no messages": (ASK | {"messages": []}, "messages must be a non-empty list"),
    "unknown role": (ASK | {"messages": _messages(("tool", "x"))}, "messages[0] must be an object with role"),
    "content not text": (ASK | {"messages": [{"role": "user", "content": [1]}]}, "messages[0].content must be a"),
    "ends with an answer": (ASK | {"messages": _messages(("user", "a"), ("assistant", "b"))}, "end with a user"),
    "question too long": (ASK | {"messages": _messages(("user", "x" * 201))}, "at most 200 are accepted"),
    "history message too long": (
        ASK | {"messages": _messages(("user", "x" * 201), ("assistant", "b"), ("user", "c"))},
        "messages[0].content is 201 characters",
    ),
    "too many turns": (
        ASK | {"messages": _messages(("user", "a"), ("assistant", "b"), ("user", "c"), ("user", "d"))},
        "at most 2 are accepted (limits.history_turns = 1",
    ),
    "seed 1e30": (ASK | {"seed": 1e30}, "seed must be an integer from 0 to 2**63 - 1, got 1e+30"),
    "negative seed": (ASK | {"seed": -1}, "seed must be an integer"),
    "temperature 'nan'": (ASK | {"temperature": "nan"}, "temperature must be a finite number >= 0, got 'nan'"),
    "temperature NaN": (json.dumps(ASK | {"temperature": float("nan")}).encode(), "temperature must be a finite"),
    "temperature Infinity": (json.dumps(ASK | {"temperature": float("inf")}).encode(), "temperature must be"),
    "temperature true": (ASK | {"temperature": True}, "temperature must be a finite number"),
    "negative temperature": (ASK | {"temperature": -0.5}, "temperature must be a finite number >= 0"),
    "top_p 0": (ASK | {"top_p": 0}, "top_p must be a number above 0 and at most 1"),
    "max_tokens 0": (ASK | {"max_tokens": 0}, "max_tokens must be an integer from 1 to 300"),
    "max_tokens above the limit": (ASK | {"max_tokens": 301}, "(limits.max_new_tokens)"),
    "max_completion_tokens 2.5": (ASK | {"max_completion_tokens": 2.5}, "max_completion_tokens must be an integer"),
    "stream 'yes'": (ASK | {"stream": "yes"}, "stream must be true or false"),
}


@pytest.mark.parametrize("body, fragment", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_bad_body_is_a_400_that_names_what_is_wrong(port, body, fragment):
    status, headers, reply = _post(port, body)
    assert_refused(reply, status, fragment, 400)
    assert headers["Connection"] == "close"


@pytest.mark.parametrize(
    "headers, body, status, fragment",
    [
        ({"Content-Length": "20000000"}, b"{}", 413, "the body is 20000000 bytes; at most 1000000"),
        ({"Content-Length": "-1"}, b"{}", 400, "Content-Length must be one whole number of bytes, got '-1'"),
        ({"Content-Length": "ten"}, b"{}", 400, "Content-Length must be one whole number"),
        ({}, b"", 411, "Content-Length is required"),
        ({"Transfer-Encoding": "chunked"}, b"2\r\n{}\r\n0\r\n\r\n", 411, "Transfer-Encoding is not accepted"),
    ],
    ids=["claims 20 MB", "length -1", "length not a number", "no length", "chunked"],
)
def test_a_body_of_unknown_or_excessive_size_is_refused_before_it_is_read(port, headers, body, status, fragment):
    started = time.perf_counter()
    answer, _, reply = _send(port, "POST", PATH, body, headers, timeout=5)  # a server waiting for the body times out
    assert_refused(reply, answer, fragment, status)
    assert time.perf_counter() - started < 2


def test_an_oversized_body_sent_in_full_still_gets_its_413(port):
    status, _, reply = _post(port, ASK | {"messages": _messages(("user", "x" * 2_000_000))})
    assert_refused(reply, status, "at most 1000000 are accepted (limits.body_bytes)", 413)


def test_good_requests_are_answered_within_their_settings(port):
    status, _, models = _send(port, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["base"]
    turn = _messages(("system", "ignored"), ("user", "a"), ("assistant", "b"), ("user", "x" * 200))
    status, _, reply = _post(port, ASK | {"messages": turn, "max_tokens": 1, "temperature": 0.7, "seed": 2**63 - 1})
    assert status == 200 and reply["usage"]["completion_tokens"] == 1, reply
    status, _, reply = _post(port, ASK | {"max_completion_tokens": 3, "temperature": 0, "top_p": 1, "seed": None})
    assert status == 200 and reply["usage"]["completion_tokens"] == 3 and reply["choices"][0]["finish_reason"]


def test_an_error_inside_the_engine_is_a_500_and_the_server_keeps_serving(engine, port, monkeypatch, capsys):
    row = engine._row

    def breaking(v, question, *rest):
        if question == "break":
            raise RuntimeError("engine broke")
        return row(v, question, *rest)

    monkeypatch.setattr(engine, "_row", breaking)
    alongside = {}
    worker = threading.Thread(target=lambda: alongside.update(reply=_post(port, ASK | {"max_tokens": 40})))
    worker.start()  # a good request running beside the failing ones
    status, _, reply = _post(port, ASK | {"messages": _messages(("user", "break"))})
    assert status == 500 and reply["error"]["type"] == "server_error" and "log" in reply["error"]["message"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", PATH, json.dumps(ASK | {"messages": _messages(("user", "break")), "stream": True}))
    stream = conn.getresponse().read().decode()  # a stream that fails ends with the error as its last event
    conn.close()
    assert json.loads(stream.strip().split("data: ")[-1])["error"]["type"] == "server_error"
    worker.join(30)
    assert alongside["reply"][0] == 200 and alongside["reply"][2]["usage"]["completion_tokens"] == 40
    assert _post(port, ASK)[0] == 200
    assert capsys.readouterr().err.count("RuntimeError: engine broke") == 2  # once for each failed request


def test_a_client_that_leaves_mid_stream_stops_the_generation(engine, port, monkeypatch):
    events, stream = [], engine.stream

    def recording(*args):
        for event in stream(*args):
            events.append(event)
            yield event

    monkeypatch.setattr(engine, "stream", recording)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", PATH, json.dumps(ASK | {"stream": True, "max_tokens": 300}))
    response = conn.getresponse()
    assert response.status == 200 and response.fp.readline().startswith(b"data: ")
    response.close()
    conn.close()
    assert engine.lock.acquire(timeout=30)  # the turn ended
    engine.lock.release()
    assert events and not any(event.done for event in events) and len(events) < 100


def test_with_keys_every_request_needs_one(locked_port):
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic first-key"}):
        status, answer_headers, reply = _send(locked_port, "GET", "/v1/models", headers=headers)
        assert_refused(reply, status, "Authorization: Bearer KEY", 401)
        assert answer_headers["WWW-Authenticate"] == "Bearer"
    status, _, reply = _post(locked_port, b"x" * 2000)  # refused before the body is looked at
    assert status == 401
    assert _send(locked_port, "GET", "/v1/models", headers={"Authorization": "Bearer first-key"})[0] == 200
    assert _post(locked_port, ASK, {"Authorization": "bearer second-key"})[0] == 200


def test_keys_come_from_the_file_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_API_KEYS", " env-one, ,env-two ")
    assert load_keys() == ["env-one", "env-two"]
    keys = tmp_path / "keys"
    keys.write_text("# team keys\n\n  file-one  \nfile-two\n")
    assert load_keys(keys) == ["file-one", "file-two"]  # the file wins over the variable
    monkeypatch.delenv("WORKBENCH_API_KEYS")
    assert load_keys() == []
    keys.write_text("# nothing yet\n\n")
    with pytest.raises(BadInputError, match="holds no keys"):
        load_keys(keys)


def test_cli_refuses_a_bad_key_file_and_warns_when_open_beyond_this_machine(config_file, tmp_path, monkeypatch, capsys):
    assert main(["serve-api", "--auth", str(tmp_path / "missing")]) == 2
    assert f"API key file {tmp_path / 'missing'}: cannot read it" in capsys.readouterr().err
    monkeypatch.delenv("WORKBENCH_API_KEYS", raising=False)
    monkeypatch.setattr("http.server.ThreadingHTTPServer.serve_forever", lambda self: None)
    assert main(["serve-api", "--config", str(config_file), "--host", "0.0.0.0", "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: serving on 0.0.0.0 without logins" in err and "no API key;" in out
    keys = tmp_path / "keys"
    keys.write_text("k\n")
    assert (
        main(["serve-api", "--config", str(config_file), "--host", "0.0.0.0", "--port", "0", "--auth", str(keys)]) == 0
    )
    out, err = capsys.readouterr()
    assert "WARNING" not in err and "API key required" in out
