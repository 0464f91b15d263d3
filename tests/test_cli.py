import json
import subprocess
import sys
import urllib.request

from conftest import DEMO

from workbench.cli import main
from workbench.workspace import run_paths


def test_prepare_command_writes_the_run_and_prints_a_summary(home, capsys):
    code = main(
        [
            "prepare",
            "--name",
            "cli",
            "--corpus",
            str(DEMO / "corpus"),
            "--qa",
            str(DEMO / "qa.jsonl"),
            "--home",
            str(home),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("prepared cli: 44 documents kept") and "leakage 0" in out
    assert json.loads(run_paths("cli", home).quality_json.read_text())["name"] == "cli"


def test_bad_input_exits_2_with_the_file_and_line(home, tmp_path, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\nnot json\n')
    assert main(["prepare", "--name", "bad", "--corpus", str(bad), "--home", str(home)]) == 2
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    assert not run_paths("bad", home).root.exists()


def test_invalid_run_name_is_a_usage_error(home):
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "prepare", "--name", "../escape", "--corpus", str(DEMO / "corpus")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid run name" in result.stderr


def test_serve_binds_loopback_shows_the_quality_report_and_chats(home):
    from gradio_client import Client

    from workbench.data.prepare import prepare
    from workbench.ui.app import build_app

    prepare("demo", [DEMO / "corpus"], DEMO / "qa.jsonl", home=home, progress=False)
    app = build_app(home=home)
    app.queue()
    try:
        _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        assert url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
        assert "<title>workbench</title>" in page or "workbench" in page
        assert "Data quality report: demo" in json.dumps(config)
        reply = Client(url, verbose=False).predict("What is the capital of France? One word.", api_name="/reply")
        assert "Paris" in reply
    finally:
        app.close()
