"""Synthetic QA in the Data tab: generate QA pairs for the picker's run, review them in a table, apply them.

A thin layer over `workbench.data.synth`, the functions `workbench synth` runs: Generate is `synthesize` with the
CLI's options (its progress reported through `on_progress`; Stop ends the run before its next generator call, the
files left as they were), the review buttons are `accept_pairs`, `reject_pairs` and `edit_pair`, and Apply is
`apply_pairs`. Pairs are shown as text only: the table's cells are plain strings (`datatype="str"`), the passage a
read-only textbox, and the messages escape what they quote (ids, file paths, reasons).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pandas as pd

from workbench.config import Config
from workbench.data import synth
from workbench.data.loaders import BadInputError
from workbench.runs import has_questions
from workbench.ui.access import Access
from workbench.ui.render import esc

CSS = ".wb-failed { color: #b42318; white-space: pre-wrap; }\n.wb-synth-warn { color: #b54708; }\n"
COLUMNS = ["id", "status", "question", "answer", "paraphrases", "document", "verbatim", "key facts"]
SHOWN = ("all", *synth.STATUSES)
QUALITY_WARNING = (
    '<p class="wb-synth-warn"><b>Read every pair before accepting it.</b> With the small packaged local model '
    "(SmolLM2-135M) quality is limited: on the whole demo (44 documents, 43 minutes on 2 CPU cores) it kept 167 "
    "pairs, and of 20 read at random only 8 were right and 3 partly; most of the others give a figure of the passage "
    "to the wrong thing, which the automatic checks cannot see. A larger model (a configured remote) should do "
    "better.</p>"
)
NO_RUN = "<p>No prepared run yet: add your data above first.</p>"


class Stopped(Exception):
    """Raised inside a generation when Stop was pressed."""


class _Stoppable:
    """A generator that ends the run before its next call once `stop` is set."""

    def __init__(self, inner: synth.Generator, stop: threading.Event):
        self.inner, self.stop, self.name = inner, stop, inner.name

    def replies(self, prompts: list[str], max_new_tokens: int, seed: int | None = None) -> list[str]:
        if self.stop.is_set():
            raise Stopped
        return self.inner.replies(prompts, max_new_tokens, seed)


def pairs_frame(pairs: list[synth.SynthPair], shown: str = "all") -> pd.DataFrame:
    """The review table: one row per pair (those of status `shown`, or all), in the pairs file's order."""
    rows = [
        [
            p.id,
            p.status,
            p.question,
            p.answer,
            " | ".join(p.paraphrases),
            f"{p.title} ({p.doc_id})" if p.title else p.doc_id,
            "yes" if p.verbatim else "no",
            ", ".join(p.facts) if p.key_facts else "no",
        ]
        for p in pairs
        if shown in (None, "", "all") or p.status == shown
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def counts_html(run: str, pairs: list[synth.SynthPair]) -> str:
    if not pairs:
        return f"<p>No QA pairs for <b>{esc(run)}</b> yet: press <b>Generate QA pairs</b>.</p>"
    by_status = Counter(p.status for p in pairs)
    counts = ", ".join(f"{by_status[s]} {s}" for s in synth.STATUSES if by_status[s])
    return f"<p><b>{esc(run)}</b>: {len(pairs)} pair(s), {esc(counts)}.</p>"


def pair_text(pair: synth.SynthPair) -> str:
    """Where a pair came from, as plain text for a read-only textbox: document, chunk, fact, key facts, passage."""
    lines = [
        f"Document: {pair.title} ({pair.doc_id}), chunk {pair.chunk_id}",
        f"Written about: {pair.fact}",
        f"Key facts of the answer: {', '.join(pair.facts) if pair.facts else 'none'}"
        + (" (all found in the passage)" if pair.key_facts else ""),
        f"Answer word for word in the passage: {'yes' if pair.verbatim else 'no'}",
        f"Generator: {pair.generator}",
    ]
    lines += [f"Paraphrase: {p}" for p in pair.paraphrases]
    return "\n".join([*lines, "", "Passage:", pair.context])


def generated_html(summary: dict) -> str:
    """What a generation did: pairs kept of the questions asked, paraphrases, answer checks, drops by reason."""
    totals, answers = summary["totals"], summary["totals"]["answers"]
    shares = ""
    if totals["kept"]:
        shares = (
            f"; answers word for word in their passage {answers['verbatim']:.0%}, with key facts all found "
            f"{answers['key_facts']:.0%}"
        )
    text = (
        f"Generated QA pairs for {summary['name']} with {summary['generator']}: kept {totals['kept']} of "
        f"{totals['questions']} question(s) from {totals['facts']} fact(s) in {totals['documents']} document(s), "
        f"{totals['paraphrases']} paraphrase(s){shares}; {summary['timings']['total']:.0f} s."
    )
    dropped = "; ".join(
        f"{synth.DROP_REASONS.get(reason, reason)}: {count}" for reason, count in totals["dropped"].items()
    )
    held = summary["pairs_file"]
    by_status = ", ".join(f"{count} {status}" for status, count in held["by_status"].items())
    return (
        f"<p>{esc(text)}</p>"
        + (f"<p>Dropped by the checks ({esc(dropped)}).</p>" if dropped else "")
        + f"<p>The pairs file holds {held['pairs']} pair(s) ({esc(by_status)}). Review them below, then "
        "<b>Apply to splits</b>.</p>"
    )


def applied_html(run: str, report: dict) -> str:
    """What an apply did: rows added per split, what was left out and why, and that fine-tuning must run again."""
    added, leaking = report["added"], report["left_out_for_leakage"]
    head = (
        f"<p>Applied the synthetic pairs of <b>{esc(run)}</b> to its splits: train {added['train']}, val "
        f"{added['val']}, test {added['test']} ({report['paraphrases']} paraphrase(s)); {report['replaced']} "
        "earlier synthetic row(s) replaced.</p><ul>"
    )
    lines = [
        head,
        f"<li>{report['held_back_pending']} pending pair(s) of test documents held back until reviewed</li>",
        f"<li>{report['rejected']} rejected pair(s) left out</li>",
        f"<li>{len(leaking)} pair(s) left out as too similar to a question of another split (leakage)"
        + (f": {esc(', '.join(leaking))}" if leaking else "")
        + "</li>",
    ]
    if report["unknown_document"]:
        lines.append(f"<li>{report['unknown_document']} pair(s) of documents no longer in the run left out</li>")
    lines.append(
        "</ul><p><b>Fine-tune again</b> (Train tab) for the adapters to learn them: an adapter trained before this "
        "used the earlier splits.</p>"
    )
    return "".join(lines)


def _ids(text: str | None) -> list[str]:
    return [i for i in re.split(r"[,\s]+", text or "") if i]


NO_PAIRS = "<p>No QA pairs for <b>{run}</b> yet: press <b>Generate QA pairs</b> first.</p>"
NO_TEST = (
    '<p class="wb-synth-warn">The test split still holds no question, so Eval has nothing to ask: accept or edit '
    "pairs of the test documents (held back above until reviewed). With only a few documents, none may have been "
    "drawn for test: add documents, or prepare with a QA set.</p>"
)


def refusal(exc: Exception, home: Path) -> str:
    """A refusal of `workbench.data.synth` as plain text, its workspace files named from the workspace
    (`runs/NAME/...`)."""
    return str(exc).replace(f"{home}/", "")


def failed_html(exc: Exception, home: Path, lead: str = "") -> str:
    return f'<p class="wb-failed">{esc(lead)}{esc(refusal(exc, home))}</p>'


class SynthPanel:
    """The components of the synthetic QA section and their handlers; build inside a `gr.Blocks` context.

    `run` is the component holding the run to work on (the run picker); `on_applied(run)` is called after an apply
    (the app reloads the run's reference answers); `make_generator(spec, config)` turns the generator choice into a
    `synth.Generator` (tests pass a scripted one)."""

    def __init__(
        self,
        home: Path,
        config: Config,
        run: gr.components.Component,
        access: Access | None = None,
        on_applied: Callable[[str], None] | None = None,
        make_generator: Callable[[str, Config], synth.Generator] = synth.make_generator,
    ):
        admin = (access or Access()).admin_only
        self.home, self.config, self.run = home, config, run
        self.on_applied, self.make_generator = on_applied, make_generator
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        with gr.Accordion("Synthetic QA pairs (optional)", open=False, elem_id="wb-synth") as self.accordion:
            gr.Markdown(
                "No QA set, or too few questions? Generate question-answer pairs from the run's documents (what "
                "`workbench synth` does), read and review them here, then add them to the run's splits."
            )
            with gr.Row():
                self.generator = gr.Dropdown(
                    ["local", *(f"remote:{name}" for name in config.chat.remotes)],
                    value="local",
                    label="Generator",
                    info="local: the base chat model; remote:NAME: an endpoint of chat.remotes",
                    elem_id="wb-synth-generator",
                )
                self.per_fact = gr.Number(
                    1, precision=0, minimum=1, label="Questions per fact", elem_id="wb-synth-per-fact"
                )
                self.paraphrases = gr.Number(
                    2, precision=0, minimum=0, label="Paraphrases per question (at most)", elem_id="wb-synth-para"
                )
                self.limit_docs = gr.Number(
                    0, precision=0, minimum=0, label="Documents (0: all)", elem_id="wb-synth-limit"
                )
            with gr.Row():
                self.generate = gr.Button("Generate QA pairs", variant="primary", scale=3, elem_id="wb-synth-generate")
                self.stop = gr.Button("Stop", variant="stop", scale=1, elem_id="wb-synth-stop")
            gr.HTML(QUALITY_WARNING, css_template=CSS, elem_id="wb-synth-warning")
            self.stopping = gr.HTML(css_template=CSS, elem_id="wb-synth-stopping")
            self.message = gr.HTML(css_template=CSS, elem_id="wb-synth-message")

            gr.Markdown("#### Review")
            with gr.Row():
                self.shown = gr.Radio(list(SHOWN), value="all", label="Show", scale=2, elem_id="wb-synth-shown")
                self.counts = gr.HTML(css_template=CSS, elem_id="wb-synth-counts")
            self.table = gr.Dataframe(
                pd.DataFrame([], columns=COLUMNS),
                datatype=["str"] * len(COLUMNS),  # plain text: model and corpus text is never rendered as markup
                interactive=False,
                wrap=True,
                label="QA pairs (select a row to review it)",
                elem_id="wb-synth-table",
            )
            with gr.Row():
                self.pair_id = gr.Textbox(
                    label="Pair id(s)",
                    info="filled by selecting a row; or type ids (comma-separated for accept/reject), Enter loads one",
                    scale=3,
                    elem_id="wb-synth-id",
                )
                self.accept = gr.Button("Accept", elem_id="wb-synth-accept")
                self.reject = gr.Button("Reject", variant="stop", elem_id="wb-synth-reject")
            with gr.Row():
                self.question = gr.Textbox(label="Question", lines=2, elem_id="wb-synth-question")
                self.answer = gr.Textbox(label="Answer", lines=2, elem_id="wb-synth-answer")
            self.save = gr.Button("Save edit (marks the pair edited)", elem_id="wb-synth-save")
            self.source = gr.Textbox(
                label="Where the pair came from", lines=8, max_lines=20, interactive=False, elem_id="wb-synth-source"
            )
            self.reviewed = gr.HTML(css_template=CSS, elem_id="wb-synth-reviewed")

            gr.Markdown(
                "#### Apply\nAdds every pair not rejected to the run's splits, a document's pairs together: unreviewed "
                "(pending) pairs go to train and val only; a test document's pairs go in once accepted or edited."
            )
            self.apply = gr.Button("Apply to splits", elem_id="wb-synth-apply")
            self.applied = gr.HTML(css_template=CSS, elem_id="wb-synth-applied")

        listed = [self.table, self.counts]
        pair = [self.pair_id, self.question, self.answer, self.source]
        self.generate.click(
            admin(self.on_generate),
            [run, self.generator, self.per_fact, self.paraphrases, self.limit_docs, self.shown],
            [self.message, self.stopping, *listed],
            concurrency_id="synth",
            show_progress_on=[self.message],
            api_name="synth_generate",
        )
        self.stop.click(admin(self.on_stop), [run], [self.stopping], api_name="synth_stop")
        gr.on(
            [self.accordion.expand, self.shown.change, run.change],
            admin(self.on_show, quiet=True),
            [run, self.shown],
            listed,
            api_name="synth_pairs",
        )
        self.messages = [self.message, self.stopping, self.reviewed, self.applied]
        run.change(admin(self.on_run, quiet=True), None, [*self.messages, *pair], show_progress="hidden")
        self.table.select(admin(self.on_select), [run], pair, api_name="synth_select")
        self.pair_id.submit(admin(self.on_load), [run, self.pair_id], pair, api_name="synth_load")
        self.accept.click(
            admin(self.on_accept), [run, self.pair_id, self.shown], [self.reviewed, *listed], api_name="synth_accept"
        )
        self.reject.click(
            admin(self.on_reject), [run, self.pair_id, self.shown], [self.reviewed, *listed], api_name="synth_reject"
        )
        self.save.click(
            admin(self.on_edit),
            [run, self.pair_id, self.question, self.answer, self.shown],
            [self.reviewed, *listed, *pair],
            api_name="synth_edit",
        )
        self.apply.click(admin(self.on_apply), [run], [self.applied], api_name="synth_apply")

    # -- generate ----------------------------------------------------------------------------------------------------

    def on_generate(
        self,
        run: str | None,
        generator: str,
        per_fact: float | None,
        paraphrases: float | None,
        limit_docs: float | None,
        shown: str,
        progress=gr.Progress(),  # noqa: B008 - Gradio's own idiom
    ):
        if not run:
            return {self.message: NO_RUN}
        stop = threading.Event()
        with self._lock:
            self._stops[run] = stop

        def tick(done: int, total: int) -> None:
            if stop.is_set():
                raise Stopped
            progress((done, total), desc="Generating QA pairs", unit="chunks")

        progress(0, desc="Chunking the documents and loading the generator")
        try:
            writer = _Stoppable(self.make_generator(generator or "local", self.config), stop)
            summary = synth.synthesize(
                run,
                self.config,
                self.home,
                generator=writer,
                per_fact=int(per_fact if per_fact is not None else 1),
                paraphrases=int(paraphrases if paraphrases is not None else 2),
                limit_docs=int(limit_docs) if limit_docs else None,
                on_progress=tick,
            )
            message = generated_html(summary)
        except Stopped:
            message = f"<p>Stopped: no pairs written; the pairs of <b>{esc(run)}</b> are as they were.</p>"
        except BadInputError as exc:
            message = failed_html(exc, self.home, "Not generated: ")
        finally:
            with self._lock:
                if self._stops.get(run) is stop:
                    del self._stops[run]
        return {self.message: message, self.stopping: "", **self._listed(run, shown)}

    def on_stop(self, run: str | None) -> str:
        with self._lock:
            stop = self._stops.get(run or "")
        if stop is None:
            return f"<p>Nothing is generating for {esc(run or 'this run')}.</p>"
        stop.set()
        return "<p>Stopping before the generator's next step; the earlier pairs stay as they were.</p>"

    # -- review ------------------------------------------------------------------------------------------------------

    def on_run(self) -> dict:
        """Another run was picked: the messages and the pair fields of the previous one are cleared."""
        return {component: "" for component in [*self.messages, self.pair_id, self.question, self.answer, self.source]}

    def on_show(self, run: str | None, shown: str):
        """The table and counts of `run`'s pairs (when the section opens, the filter or the run changes)."""
        return self._listed(run, shown)

    def _listed(self, run: str | None, shown: str) -> dict:
        if not run:
            return {self.table: pairs_frame([]), self.counts: NO_RUN}
        try:
            pairs = self._pairs(run)
        except BadInputError as exc:
            return {self.table: pairs_frame([]), self.counts: failed_html(exc, self.home)}
        return {self.table: pairs_frame(pairs, shown), self.counts: counts_html(run, pairs)}

    def _pairs(self, run: str) -> list[synth.SynthPair]:
        path = synth.pairs_file(run, self.home)
        return synth.read_pairs(path) if path.is_file() else []

    def _no_pairs(self, run: str | None) -> str | None:
        """What to do first when there is no run or it has no pairs file yet; None when there are pairs to act on."""
        if not run:
            return NO_RUN
        return None if synth.pairs_file(run, self.home).is_file() else NO_PAIRS.format(run=esc(run))

    def on_select(self, run: str | None, evt: gr.SelectData):
        """A row chosen in the table: its id, question and answer in the edit fields, and where it came from."""
        row = evt.row_value or []
        return self.on_load(run, str(row[0]) if row else "")

    def on_load(self, run: str | None, pair_id: str | None):
        """Pair `pair_id` of `run` in the edit fields, or the fields cleared with what went wrong."""
        wanted = (pair_id or "").strip()
        try:
            found = next((p for p in self._pairs(run) if p.id == wanted), None) if run and wanted else None
        except BadInputError as exc:
            return {self.pair_id: wanted, self.question: "", self.answer: "", self.source: refusal(exc, self.home)}
        if found is None:
            missing = f"No pair with id {wanted!r} in {run}." if wanted and run else ""
            return {self.pair_id: wanted, self.question: "", self.answer: "", self.source: missing}
        return {
            self.pair_id: found.id,
            self.question: found.question,
            self.answer: found.answer,
            self.source: pair_text(found),
        }

    def on_accept(self, run: str | None, pair_ids: str | None, shown: str):
        return self._review(run, pair_ids, shown, synth.accept_pairs, "Accepted")

    def on_reject(self, run: str | None, pair_ids: str | None, shown: str):
        return self._review(run, pair_ids, shown, synth.reject_pairs, "Rejected")

    def _review(self, run: str | None, pair_ids: str | None, shown: str, action: Callable, done: str) -> dict:
        ids = _ids(pair_ids)
        refused = self._no_pairs(run) or (None if ids else "<p>Select a row or type pair ids first.</p>")
        if refused:
            return {self.reviewed: refused, **self._listed(run, shown)}
        try:
            action(run, ids, self.home)
            message = f"<p>{done} {len(ids)} pair(s): {esc(', '.join(ids))}.</p>"
        except BadInputError as exc:
            message = failed_html(exc, self.home)
        return {self.reviewed: message, **self._listed(run, shown)}

    def on_edit(self, run: str | None, pair_id: str | None, question: str | None, answer: str | None, shown: str):
        """Save the edited question and answer (an empty field leaves that one unchanged); the pair becomes edited."""
        wanted = (pair_id or "").strip()
        one = len(_ids(wanted)) == 1
        refused = self._no_pairs(run) or (None if one else "<p>Select one row (or type one pair id) to edit.</p>")
        if refused:
            return {self.reviewed: refused, **self._listed(run, shown)}
        if not (question or "").strip() and not (answer or "").strip():
            return {self.reviewed: "<p>Type the new question or answer first.</p>", **self._listed(run, shown)}
        try:
            pair = synth.edit_pair(
                run, wanted, self.home, question=(question or "").strip() or None, answer=(answer or "").strip() or None
            )
        except BadInputError as exc:
            return {self.reviewed: failed_html(exc, self.home), **self._listed(run, shown)}
        checks = "answer word for word in the passage" if pair.verbatim else "answer not word for word in the passage"
        checks += ", key facts all found" if pair.key_facts else ""
        message = f"<p>Saved pair {esc(pair.id)} as edited ({checks}).</p>"
        return {self.reviewed: message, **self._listed(run, shown), **self.on_load(run, pair.id)}

    # -- apply -------------------------------------------------------------------------------------------------------

    def on_apply(self, run: str | None) -> str:
        refused = self._no_pairs(run)
        if refused:
            return refused
        try:
            report = synth.apply_pairs(run, self.config, self.home)
        except BadInputError as exc:
            return failed_html(exc, self.home, "Not applied: ")
        if self.on_applied is not None:
            self.on_applied(run)
        return applied_html(run, report) + ("" if has_questions(run, "test", self.home) else NO_TEST)
