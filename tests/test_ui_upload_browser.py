"""Your own corpus from the browser, in Chromium (Debian's) driven by Playwright: the app starts on an empty
workspace; an admin names a run, uploads two Markdown files and an unsupported one, prepares them, reads why the
third was skipped, builds the index with one more click, and asks in the arena, where the RAG column answers from the
new index. The tiny random-init model answers (what is checked is the path, not the words).

`WORKBENCH_SCREENSHOTS=1` also writes docs/screenshot-data.png (`WORKBENCH_SCREENSHOTS=DIR`: into DIR instead).
"""

import os
from pathlib import Path

import pytest
from conftest import launch_locally

from workbench.config import Config
from workbench.session import Arena
from workbench.store import Store

pytest.importorskip("playwright")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
DOCS = {
    "returns.md": "# Returns policy\n\n## Return window\nA Skylark kettle may be returned within 45 days of delivery "
    "for a full refund, unused and in its box.\n\n## Refunds\nRefunds reach the original card within five working "
    "days after the warehouse receives the parcel.\n",
    "warranty.md": "# Warranty\n\n## Cover\nEvery Skylark kettle carries a three year warranty against manufacturing "
    "faults; limescale damage is not covered.\n\n## Claims\nEmail the serial number and a photo of the fault; a "
    "courier collects the kettle within two days.\n",
}


@pytest.fixture(scope="module")
def served(tiny_llama_folder, tmp_path_factory):
    """The app on an empty workspace, on a free loopback port."""
    from workbench.ui.app import build_app

    home = tmp_path_factory.mktemp("upload") / "home"
    config = Config.model_validate(
        {"model": {"base": str(tiny_llama_folder)}, "chat": {"max_new_tokens": 6, "variants": ["base", "rag"]}}
    )
    arena = Arena(config, None, home)
    app = build_app(home, None, config, arena=arena)
    app.queue(default_concurrency_limit=1)
    url = launch_locally(app)
    yield url, home
    app.close()
    arena.store.close()


def test_an_admin_uploads_prepares_indexes_and_asks_without_a_terminal(served, tmp_path):
    url, home = served
    files = []
    for name, text in {**DOCS, "setup.exe": "MZ\x00\x01 not a document"}.items():
        files.append(tmp_path / name)
        files[-1].write_text(text)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_function("() => document.querySelector('#wb-status')?.innerText.includes('No prepared run')")

        page.get_by_role("tab", name="Data").click()
        assert "No prepared run yet" in page.locator("#wb-data-report").inner_text()
        page.locator("#wb-data-name").locator("input, textarea").first.fill("kettles")
        page.locator("#wb-data-files input[type=file]").set_input_files([str(f) for f in files])
        page.wait_for_function(  # each file listed (name and suffix apart) once uploaded
            "() => ['returns', 'warranty', 'setup', '.exe']"
            ".every(n => document.querySelector('#wb-data-files').innerText.includes(n))",
            timeout=30_000,
        )
        page.locator("#wb-data-prepare").click()
        message = page.locator("#wb-data-message")
        message.locator("text=Prepared run").wait_for(timeout=60_000)
        said = message.inner_text()
        assert "2 document(s) kept of 2 loaded, 1 file(s) skipped" in said
        assert "setup.exe: unsupported file type '.exe'" in said
        report = page.locator("#wb-data-report").inner_text()
        assert "Data quality report: kettles" in report and "unsupported file type" in report
        assert "setup.exe" in report and str(home) not in report  # named as uploaded, not by its workspace path
        assert "Leakage" in report and "Splits" in report
        picker = page.locator("#wb-run input")
        assert picker.input_value() == "kettles · prepared"
        where = os.environ.get("WORKBENCH_SCREENSHOTS")
        if where:
            shot = (REPO / "docs" if where == "1" else Path(where)) / "screenshot-data.png"
            page.wait_for_timeout(1000)  # the picker's change settles
            page.screenshot(path=str(shot), full_page=True)

        page.locator("#wb-data-index").click()
        page.locator("#wb-data-built").locator("text=built").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => document.querySelector('#wb-run input').value === 'kettles · prepared, indexed'", timeout=30_000
        )

        page.get_by_role("tab", name="Arena").click()
        page.wait_for_function(  # the arena's poll offers the new run's variants: base and, with the index, rag
            "() => [...document.querySelectorAll('#wb-variants input:checked')].length === 2", timeout=30_000
        )
        page.locator("#wb-question textarea").fill("How long is the return window for a Skylark kettle?")
        page.locator("#wb-ask").click()
        page.wait_for_function(
            "() => document.querySelector('#wb-status').innerText.includes('answered')", timeout=60_000
        )
        texts = [page.locator(f"#wb-col-{label} .wb-answer").inner_text() for label in "AB"]
        assert all(text.strip() for text in texts)
        assert page.locator(".wb-sources").count() == 1  # the RAG column shows what it was shown
        sources = page.locator(".wb-sources").text_content()  # folded: the text is there, not shown
        assert "Returns policy" in sources or "Warranty" in sources
        browser.close()
    with Store.open(home=home) as store:
        answers = store.answers("kettles")
    assert sorted(a["variant"] for a in answers) == ["base", "rag"]
