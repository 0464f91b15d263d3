"""The web app. For now: the prepared run's data-quality report and a chat with the base model.

The arena, training and index tabs arrive with their issues; they will call the same core functions.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.config import Config
from workbench.models import chat
from workbench.workspace import resolve_home, run_paths


def _runs(home: Path) -> list[str]:
    runs = home / "runs"
    return sorted(p.name for p in runs.iterdir() if (p / "quality.md").is_file()) if runs.is_dir() else []


def _quality(home: Path, name: str | None) -> str:
    if not name:
        return "No prepared run yet: run `workbench prepare --name NAME --corpus PATH [--qa PATH]`."
    return run_paths(name, home).quality_md.read_text(encoding="utf-8")


def build_app(home: str | Path | None = None, name: str | None = None, config: Config | None = None) -> gr.Blocks:
    config = config or Config()
    home = resolve_home(home)
    runs = _runs(home)
    name = name or (runs[0] if runs else None)

    def reply(message: str, history: list[dict]) -> str:
        messages = [{"role": turn["role"], "content": turn["content"]} for turn in history]
        return chat(messages + [{"role": "user", "content": message}], config.model.base, device=config.model.device)

    with gr.Blocks(title="workbench") as app:
        gr.Markdown("# workbench\nFine-tune, retrieve, or both? Prepare a corpus, then compare.")
        with gr.Tab("Data"):
            run = gr.Dropdown(choices=runs, value=name, label="Run", interactive=bool(runs))
            report = gr.Markdown(_quality(home, name))
            run.change(lambda chosen: _quality(home, chosen), run, report)
        with gr.Tab("Chat (base model)"):
            gr.ChatInterface(reply, description=f"Greedy answers from `{config.model.base}`.")
    return app


def launch(home=None, name: str | None = None, host: str = "127.0.0.1", port: int = 7860, config: Config | None = None):
    app = build_app(home, name, config)
    app.queue(default_concurrency_limit=1)
    return app.launch(server_name=host, server_port=port)
