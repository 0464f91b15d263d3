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
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    assert not run_paths("bad", home).root.exists()


def test_invalid_run_name_is_a_usage_error(home):
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "prepare", "--name", "../escape", "--corpus", str(DEMO / "corpus")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid run name" in result.stderr


def test_serve_binds_loopback_and_shows_the_quality_report(home):
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
        assert "Chat (base model)" not in json.dumps(config)  # the arena's base column is the one base chat
    finally:
        app.close()


def test_help_says_what_the_tool_does_and_the_order_of_commands():
    from workbench.cli import build_parser

    text = build_parser().format_help()
    assert "thin adapter" not in text and "blind browser arena" in text
    order = [text.index(f"  workbench {command} ") for command in ("prepare", "index", "finetune", "ask", "serve")]
    assert order == sorted(order) and "workbench check --input" in " ".join(text.split())
    assert "`workbench demo` prepares, indexes and fine-tunes the shipped demo corpus" in text


def test_prepare_counts_skipped_files_and_skipped_rows_apart(home, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pump\nThe pump runs at 40 litres per minute on weekdays.")
    good = json.dumps({"id": "hub", "text": "The hub restarts itself every night at two in the morning."})
    (corpus / "rows.jsonl").write_text(f'{good}\nnot json\n{{"id": "no-text"}}\n')
    (corpus / "photo.png").write_bytes(b"\x89PNG....")
    (corpus / "empty.txt").write_text("")
    argv = ["prepare", "--name", "four", "--corpus", str(corpus), "--home", str(home), "--skip-bad-rows"]
    assert main(argv) == 0
    assert "2 documents kept of 2 (2 file(s) and 2 bad row(s) skipped," in capsys.readouterr().out
    paths = run_paths("four", home)
    files = json.loads(paths.quality_json.read_text())["files"]
    assert files["read"] == 2
    assert sorted(s["source"] for s in files["skipped"]) == [str(corpus / "empty.txt"), str(corpus / "photo.png")]
    assert [s["source"] for s in files["skipped_rows"]] == [f"{corpus / 'rows.jsonl'}:2", f"{corpus / 'rows.jsonl'}:3"]
    quality = paths.quality_md.read_text()
    assert "- Read: 2\n- Skipped: 2\n- Rows skipped in files read (`--skip-bad-rows`): 2\n" in quality
    assert "rows.jsonl:3 | missing or empty 'text' field" in quality


def _prepare_small_run(name: str, home, tmp_path) -> None:
    corpus = tmp_path / "small"
    corpus.mkdir()
    (corpus / "pump.md").write_text("# Pump\nThe pump runs at 40 litres per minute on weekdays.")
    assert main(["prepare", "--name", name, "--corpus", str(corpus), "--home", str(home)]) == 0


def test_ask_for_a_run_that_was_never_prepared_names_it_and_the_runs_there_are(home, tmp_path, capsys):
    _prepare_small_run("pumps", home, tmp_path)
    capsys.readouterr()
    assert main(["ask", "--name", "nosuch", "--home", str(home), "How fast does the pump run?"]) == 2
    err = capsys.readouterr().err
    assert f"workbench ask: error: {home / 'runs' / 'nosuch'}: no prepared run 'nosuch' (prepared runs: pumps)" in err
    assert "`workbench prepare --name nosuch --corpus PATH`" in err


def test_ask_says_which_variants_cannot_answer_and_why(home, tmp_path, capsys, tiny_llama_folder):
    _prepare_small_run("pumps", home, tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(f"model:\n  base: {tiny_llama_folder}\nchat:\n  max_new_tokens: 2\n")
    capsys.readouterr()
    assert main(["ask", "--name", "pumps", "--home", str(home), "--config", str(config), "How fast?"]) == 0
    out, err = capsys.readouterr()
    finetune, index = "run `workbench finetune --name pumps`", "run `workbench index --name pumps`"
    assert [line for line in err.splitlines() if line.startswith("not answering")] == [
        f"not answering with ft: no adapter 'default': {finetune}",
        f"not answering with rag: no index: {index}",
        f"not answering with ft_rag: no adapter 'default': {finetune} and no index: {index}",
    ]
    assert [line.split()[1] for line in out.splitlines() if line.startswith("== ")] == ["base"]


def test_demo_names_its_workspace_and_quiets_library_deprecations(demo_index, tiny_llama_folder, recwarn, capsys):
    import argparse

    from peft import get_peft_model

    from workbench.cli import _demo_workspace
    from workbench.config import Config
    from workbench.finetune import lora_config
    from workbench.models import fresh_causal_lm

    home, _ = demo_index
    _demo_workspace(argparse.Namespace(home=str(home), config=None))
    assert capsys.readouterr().out == (
        f"workspace: {home.resolve()} (runs/: prepared data, adapters and quality reports; "
        "indexes/: retrieval indexes; workbench.db: answers, judgements and ratings)\n"
    )
    model, _ = fresh_causal_lm(str(tiny_llama_folder))
    get_peft_model(model, lora_config(Config().finetune))  # transformers warns here, as in the demo's training
    assert [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)] == []
