"""The arena in a real browser: Chromium (Debian's) driven by Playwright against the app on the indexed demo.

One walk through as a rater: ask, watch the four blind columns fill, rate and vote, see the names, find the rating
in the store; then ask about a planted document full of markup and check none of it ran. Blindness is checked on
everything the browser received before the vote (the page, every HTTP body, the streamed queue messages read
through a `fetch` wrapper, websocket frames) and on the DOM, with a checker that must then find the names in
what arrives after the vote.

`WORKBENCH_SCREENSHOTS=1` also writes docs/screenshot-arena*.png and docs/screenshot-ratings.png (the Report tab)
(`WORKBENCH_SCREENSHOTS=DIR`: into DIR instead, to look at them without changing the docs).
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import launch_locally
from test_session import write_random_adapter

from workbench.config import Config
from workbench.session import Arena
from workbench.store import Store
from workbench.workspace import run_paths

pytest.importorskip("playwright")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip("needs Debian's chromium (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("base", "ft", "rag", "ft_rag")
QUESTION = "How long is the return window for the Skylark S3 Pro?"
XSS_QUESTION = "What is the Quillfeather sandbox access code?"
XSS_DOC = {
    "id": "quillfeather-sandbox",
    "title": "Quillfeather sandbox notice",
    "text": (
        "# Quillfeather sandbox notice\n\nThe Quillfeather sandbox access code is QF-7731. "
        '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
        "Quillfeather sandboxes are rebuilt every night at 02:00 and the access code never changes."
    ),
    "source": "tests/quillfeather.md",
    "format": "md",
}
CAPTURE = """
window.__wbPayloads = [];
const keep = (kind, url, text) => window.__wbPayloads.push({kind, url, text});
const originalFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await originalFetch(...args);
  const copy = response.clone();
  (async () => {
    if (!copy.body) return;
    const reader = copy.body.getReader(), decoder = new TextDecoder();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      keep('fetch', copy.url, decoder.decode(value, {stream: true}));
    }
  })().catch(() => {});
  return response;
};
"""
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# -- the blindness checker: pure, so it is also tested on what arrives after the vote ----------------------------


def json_values(text: str):
    """("json", document) for every JSON document in a payload (the whole text, or the `data:` lines of a
    server-sent event stream), and ("cut", line) for each `data:` line that does not parse (a network chunk may end
    in the middle of one)."""
    try:
        yield "json", json.loads(text)
        return
    except ValueError:
        pass
    for line in text.splitlines():
        if line.startswith("data:"):
            try:
                yield "json", json.loads(line.removeprefix("data:"))
            except ValueError:
                yield "cut", line
        elif line.strip() and not re.match(r"(event|id|retry):", line):
            yield "cut", line  # the rest of a line a previous chunk began


def name_leaks(text: str, names=VARIANTS) -> list[str]:
    """Places in a payload or page that name a variant as a column identity, apart from the variant picker.

    In JSON: a string that is exactly a variant name, unless it sits inside an object with `choices` (the
    picker's config or update). In HTML or text: a name as a whole element text, a whole attribute value or in
    a column header; the names that are no English word (`ft`, `rag`, `ft_rag`) anywhere as a token.
    """
    leaks = []

    def walk(value, path, in_picker):
        if isinstance(value, dict):
            in_picker = in_picker or "choices" in value
            for key, item in value.items():
                walk(item, f"{path}.{key}", in_picker)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", in_picker)
        elif isinstance(value, str):
            if value in names and not in_picker:
                leaks.append(f"json {path} = {value!r}")
            elif "<" in value:
                leaks.extend(f"json {path}: {leak}" for leak in markup_leaks(value, names))

    documents = list(json_values(text))
    for kind, document in documents:
        if kind == "cut":  # read as text
            leaks.extend(markup_leaks(document, names))
        else:
            walk(document, "$", False)
    if not documents:
        leaks.extend(markup_leaks(text, names))
    return leaks


def markup_leaks(text: str, names=VARIANTS) -> list[str]:
    alternatives = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    patterns = [
        rf">\s*(?:{alternatives})\s*<",  # a whole element text
        rf"=\s*[\"'](?:{alternatives})[\"']",  # a whole attribute value
        rf"wb-head\\?\"?>(?:(?!</div>).)*?\b(?:{alternatives})\b(?:(?!</div>).)*</div>",  # a column header
        r"(?<![\w-])(?:ft|rag|ft_rag)(?![\w-])",  # names that are no English word
    ]
    return [m.group(0) for p in patterns for m in re.finditer(p, text)]


def test_the_checker_finds_names_and_spares_the_picker_and_ordinary_words():
    picker = json.dumps({"props": {"choices": [["base", "base"], ["ft_rag", "ft_rag"]], "value": ["base"]}})
    answer = json.dumps(
        {"msg": "process_generating", "output": {"data": ['<div class="wb-head">A</div>the base rate']}}
    )
    assert name_leaks(picker) == [] and name_leaks(answer) == []
    assert name_leaks(json.dumps({"data": ["rag"]}))
    assert name_leaks('data: {"data": ["<div class=\\"wb-head\\">B <span>= base</span></div>"]}')
    assert name_leaks("<td>ft_rag</td>") and name_leaks('<div data-variant="base">')
    # a network chunk that ends inside an event: its cut line is still read
    assert name_leaks('data: {"msg": "heartbeat"}\ndata: {"output": {"data": ["<td>ft_rag</td><td>B') == [
        ">ft_rag<",
        "ft_rag",
    ]
    # and the chunk after it, which begins in the middle of that line
    assert name_leaks('ag</td><td>rag</td>"]}}\ndata: {"msg": "heartbeat"}') == [">rag<", "rag"]


# -- the app in a thread, the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo_index, tmp_path_factory):
    """The app on the demo + a random adapter + a planted markup document, on a free loopback port."""
    from workbench.retrieval.index import build_index
    from workbench.ui.app import build_app

    home = tmp_path_factory.mktemp("browser") / "home"
    shutil.copytree(demo_index[0], home)
    write_random_adapter("smollm2-135m-instruct", run_paths("demo", home).adapter)
    with run_paths("demo", home).documents.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(XSS_DOC) + "\n")
    build_index("demo", home=home, update=True, progress=False)
    config = Config.model_validate({"chat": {"max_new_tokens": 20}})
    arena = Arena(config, "demo", home)
    arena.engine.answer("Warm up.", ["base", "ft"])  # first-call kernel set-up is not what the timing measures
    app = build_app(home, "demo", config, arena=arena)
    app.queue(default_concurrency_limit=1)
    url = launch_locally(app)
    yield url, home
    app.close()
    arena.store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shoot(page, name: str) -> None:
    where = os.environ.get("WORKBENCH_SCREENSHOTS")
    if where:
        page.screenshot(path=str((REPO / "docs" if where == "1" else Path(where)) / name), full_page=True)


ALL_ANSWERING = """labels => [...labels].every(l => {
  const el = document.querySelector('#wb-col-' + l + ' .wb-answer');
  return el && el.textContent.replace('\u258c', '').trim().length > 0;
})"""
ALL_CHECKED = "n => document.querySelectorAll('.wb-meta').length === n && !document.body.innerText.includes('\u258c')"


def ask(page, question: str, labels: str = "ABCD") -> float:
    """Type and ask; returns seconds from the click until every column shows its first words."""
    page.locator("#wb-question textarea").fill(question)
    page.evaluate("() => { window.__t0 = performance.now(); document.querySelector('#wb-ask').click(); }")
    page.wait_for_function(ALL_ANSWERING, arg=labels, polling="raf", timeout=120_000)
    elapsed = page.evaluate("() => (performance.now() - window.__t0) / 1000")
    page.wait_for_function(ALL_CHECKED, arg=len(labels), timeout=120_000)
    page.wait_for_function("() => document.querySelector('#wb-status').innerText.includes('answered')", timeout=60_000)
    return elapsed


def test_a_rater_compares_blind_votes_sees_the_names_and_markup_never_runs(served, browser):
    url, home = served
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.add_init_script(CAPTURE)
    responses, frames = [], []
    page.on("response", lambda response: responses.append(response))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(str(frame))))
    page.goto(url)
    picker = page.locator("#wb-variants input[type=checkbox]")
    page.wait_for_function(
        "() => document.querySelectorAll('#wb-variants input:checked').length === 4", timeout=120_000
    )
    assert picker.count() == 5  # the four configured, checked, and `prompt` (the demo has training questions)
    rater = rater_shown(page)
    assert rater.startswith("browser-")
    assert shown_columns(page) == ("ABCD", "ABCD") and page.locator("#wb-legend").is_visible()
    for name in ("rag", "ft_rag"):  # fewer variants, fewer columns and rating controls; more, more
        page.locator("#wb-variants").get_by_label(name, exact=True).click()
    page.wait_for_function("() => !document.querySelector('#wb-col-C')?.checkVisibility()", timeout=30_000)
    assert shown_columns(page) == ("AB", "AB")
    for name in ("rag", "ft_rag"):
        page.locator("#wb-variants").get_by_label(name, exact=True).click()
    page.wait_for_function("() => document.querySelector('#wb-col-D')?.checkVisibility()", timeout=30_000)
    assert shown_columns(page) == ("ABCD", "ABCD")

    first_words = ask(page, QUESTION)
    with Store.open(home=home) as store:
        engine_ttft = max(a["ttft_s"] for a in store.answers("demo"))
    print(
        f"\nclick -> first words in all 4 columns: {first_words:.2f} s "
        f"(engine, last column's first token: {engine_ttft:.2f} s)"
    )
    headers = page.locator(".wb-head").all_inner_texts()
    assert headers == ["A", "B", "C", "D"]
    texts = {label: page.locator(f"#wb-col-{label} .wb-answer").inner_text() for label in "ABCD"}
    assert all(texts.values()) and len(set(texts.values())) > 1
    assert page.locator(".wb-sources").count() == 2  # the two RAG columns show what they were shown
    tops = {round(page.locator(f"#wb-stars-{label}").bounding_box()["y"]) for label in "ABCD"}
    assert len(tops) == 1  # every column's stars on one line, however long its answer
    for label in "ABCD":  # each evidence passage once per column, however many claims cite it
        passages = page.locator(f"#wb-col-{label} .wb-evidence pre").all_text_contents()
        assert len(passages) == len(set(passages))

    # Blindness: everything received so far, and the page without the variant picker.
    received = [r for r in responses if "text/event-stream" not in (r.headers.get("content-type") or "")]
    bodies = [(r.url, _text(r)) for r in received if r.status == 200 and _is_data(r)]
    bodies += [(p["url"], p["text"]) for p in page.evaluate("() => window.__wbPayloads")]
    bodies += [("websocket", f) for f in frames]
    streamed = [text for where, text in bodies if "queue/data" in where]
    assert any("wb-answer" in text for text in streamed)  # the capture really saw the streamed columns
    before = {where: name_leaks(text) for where, text in bodies}
    assert not {where: leaks for where, leaks in before.items() if leaks}
    dom = page.evaluate(
        "() => { const c = document.body.cloneNode(true); c.querySelector('#wb-variants').remove(); "
        "return c.outerHTML; }"
    )
    assert not markup_leaks(dom)
    shoot(page, "screenshot-arena.png")

    # Rate, flag, comment, vote B best, submit: the names appear, in the page and in the store.
    count = len(page.evaluate("() => window.__wbPayloads"))
    for label, stars in zip("ABCD", (2, 5, 3, 1)):
        page.locator(f"#wb-stars-{label} label", has_text=str(stars)).click()
    page.locator("#wb-flag-D input[type=checkbox]").check()
    page.locator("#wb-vote label", has_text="B is best").click()
    page.locator("#wb-comment textarea").fill("B answers <b>exactly</b> the question")
    page.locator("#wb-submit").click()
    page.wait_for_function("() => document.querySelector('#wb-reveal').innerText.includes('Revealed')", timeout=60_000)
    revealed = dict(re.findall(r"\b([ABCD]) = (\w+)", page.locator("#wb-reveal").inner_text()))
    assert sorted(revealed) == list("ABCD") and sorted(revealed.values()) == sorted(VARIANTS)
    assert [h.split(" = ")[-1] for h in page.locator(".wb-head").all_inner_texts()] == [revealed[x] for x in "ABCD"]
    # The page reads the stream before the capture's copy of it does: give the copy a moment on a busy machine.
    page.wait_for_function(f"() => window.__wbPayloads.slice({count}).some(p => p.text.includes('Revealed'))")
    after = [p["text"] for p in page.evaluate("() => window.__wbPayloads")[count:]]
    assert any(name_leaks(text) for text in after)  # the same checker sees the names once they are sent
    shoot(page, "screenshot-arena-revealed.png")

    with Store.open(home=home) as store:
        ratings = [r for r in store.ratings("demo") if r["rater"] == rater]
        [conversation] = store.conversations("demo")
    assert conversation["blind_order"] == [revealed[x] for x in "ABCD"]
    by_variant = {r["variant"]: r for r in ratings}
    assert len(ratings) == 4 and set(by_variant) == set(VARIANTS)
    best = by_variant[revealed["B"]]
    assert (best["stars"], best["vote"], best["comment"]) == (5, "best", "B answers <b>exactly</b> the question")
    assert by_variant[revealed["D"]]["hallucinated"] is True and by_variant[revealed["A"]]["stars"] == 2

    # A retrieved document full of markup: shown as text, never run (all details opened so images would load).
    # Asked of the two RAG variants only: two columns, before and after asking.
    for name in ("base", "ft"):
        page.locator("#wb-variants").get_by_label(name, exact=True).click()
    page.wait_for_function("() => !document.querySelector('#wb-col-C')?.checkVisibility()", timeout=30_000)
    assert shown_columns(page) == ("AB", "AB")
    ask(page, XSS_QUESTION, "AB")
    assert shown_columns(page) == ("AB", "AB")
    assert page.locator("#wb-vote label").all_inner_texts() == ["A is best", "B is best", "Tie", "All bad"]
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_timeout(500)
    sources = " ".join(page.locator(".wb-sources").all_inner_texts())
    assert '<img src=x onerror="window.__xss=1">' in sources and "<script>window.__xss=2</script>" in sources
    assert page.evaluate("() => window.__xss") is None
    assert page.locator(".wb-col img, .wb-col script").count() == 0

    page.get_by_role("tab", name="Report").click()
    page.wait_for_function("() => document.querySelector('#wb-ratings table') !== null", timeout=60_000)
    table = page.locator("#wb-ratings table").inner_text()
    assert all(name in table for name in VARIANTS) and "votes won" in table
    report = page.locator("#wb-report").inner_text()
    assert "no eval yet" in report and "Human preference" in report  # the vote above is in the report
    assert page.locator("#wb-report svg").count() >= 1  # the Bradley-Terry plot of that vote
    shoot(page, "screenshot-ratings.png")
    with page.expect_download(timeout=30_000) as download:
        page.locator("#wb-ratings-csv").click()
    rows = download.value.path().read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("id,run,conversation_id") and len(rows) == 1 + 4

    # Raters: a browser keeps its id across reloads; another browser is another rater.
    page.reload()
    assert rater_shown(page) == rater
    other = browser.new_page()
    other.goto(url)
    assert rater_shown(other) not in (rater, "")
    other.close()
    page.close()


def shown_columns(page) -> tuple[str, str]:
    """The labels of the visible answer columns, and of the visible star ratings."""
    visible = "sel => [...'ABCD'].filter(l => document.querySelector(sel + l)?.checkVisibility()).join('')"
    return page.evaluate(visible, "#wb-col-"), page.evaluate(visible, "#wb-stars-")


def rater_shown(page) -> str:
    page.wait_for_function(
        "() => document.querySelector('#wb-status')?.innerText.includes('You rate as')", timeout=60_000
    )
    return re.search(r"You rate as (\S+)\.", page.locator("#wb-status").inner_text()).group(1)


def _is_data(response) -> bool:
    """The page and what the app sent (JSON, HTML, text); not the static script and style bundles."""
    kind = response.headers.get("content-type") or ""
    return any(t in kind for t in ("json", "text/html", "text/plain"))


def _text(response) -> str:
    try:
        return response.text()
    except Exception as exc:  # noqa: BLE001 - a body the browser no longer holds fails the check below
        return f"<unreadable: {exc}>"
