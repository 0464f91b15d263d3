"""The `workbench` command: a dict of subcommands, each a thin adapter from arguments to a core function."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.config import Config, ConfigError, load_config
from workbench.data.loaders import BadInputError
from workbench.models import ModelNotAvailable
from workbench.workspace import check_adapter_name, check_name, read_json, resolve_home

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
DESCRIPTION = """\
Should you fine-tune a model on your documents, retrieve from them (RAG), both, or just prompt better?
The workbench builds each option from one corpus on one base model, lets you compare them side by side
in a blind browser arena, and flags answers the sources do not support.

Typical order:
  workbench prepare  --name NAME --corpus DOCS [--qa QA.jsonl]   clean, dedup, redact and split the corpus
  workbench index    --name NAME                                  build the retrieval index (RAG)
  workbench finetune --name NAME [--adapter A]                    train a LoRA adapter
  workbench sweep    --name NAME --grid lr=1e-4,3e-4 [--promote]  train and compare one adapter per setting
  workbench ask      --name NAME "QUESTION"                       answer with every variant, or
  workbench serve    --name NAME                                  chat with them in the browser
  workbench eval     --name NAME                                  answer the test questions with every variant
  workbench report   --name NAME [--out REPORT.html]              decide: quality, preference, hallucination, cost
  workbench check    --input ANSWERS.jsonl --output OUT.jsonl     flag unsupported claims in answers

`workbench demo` prepares, indexes and fine-tunes the shipped demo corpus and opens the app.
Everything is written under --home (default: $WORKBENCH_HOME or the current folder)."""


def _prepare(args: argparse.Namespace) -> int:
    from workbench.data.prepare import prepare

    report = prepare(
        args.name,
        corpus=args.corpus,
        qa=args.qa,
        config=load_config(args.config),
        home=args.home,
        skip_bad_rows=args.skip_bad_rows,
    )
    _print_prepare_summary(report)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from workbench.data import synth

    config = load_config(args.config)
    review = {"--accept": args.accept, "--reject": args.reject, "--apply": args.apply}
    generation = {"--generator": args.generator, "--per-fact": args.per_fact, "--paraphrases": args.paraphrases}
    generation["--limit-docs"] = args.limit_docs
    if any(review.values()):
        mixed = [flag for flag, value in generation.items() if value is not None]
        if mixed:
            raise BadInputError(
                f"{', '.join(mixed)} generate pairs, while --accept, --reject and --apply work on the pairs already "
                "generated; run them as two commands"
            )
        for flag, action in (("--accept", synth.accept_pairs), ("--reject", synth.reject_pairs)):
            ids = [i.strip() for i in (review[flag] or "").split(",") if i.strip()]
            if ids:
                action(args.name, ids, args.home)
                print(f"{flag.removeprefix('--')}ed {len(ids)} pair(s) in {synth.pairs_file(args.name, args.home)}")
        if args.apply:
            report = synth.apply_pairs(args.name, config, args.home)
            added = report["added"]
            print(
                f"applied synthetic pairs to {args.name}: train {added['train']} / val {added['val']} / test "
                f"{added['test']} ({report['paraphrases']} paraphrases; {report['replaced']} earlier synthetic rows "
                f"replaced; {report['held_back_pending']} pending pair(s) of test documents held back until reviewed, "
                f"{report['rejected']} rejected, {len(report['left_out_for_leakage'])} left out as too similar to "
                "a question of another split)"
            )
        return 0
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars inside the synth bar
    given = {key.removeprefix("--").replace("-", "_"): value for key, value in generation.items() if value is not None}
    summary = synth.synthesize(args.name, config, args.home, progress=True, **given)
    totals, answers = summary["totals"], summary["totals"]["answers"]
    shares = (
        f"; answers verbatim in their chunk {answers['verbatim']:.0%}, key facts found {answers['key_facts']:.0%}"
        if totals["kept"]
        else ""
    )
    print(
        f"synthesized {args.name} with {summary['generator']}: kept {totals['kept']} of {totals['questions']} "
        f"question(s) from {totals['facts']} facts in {totals['documents']} document(s), {totals['paraphrases']} "
        f"paraphrase(s){shares}; {summary['timings']['total']:.0f} s. Wrote {synth.pairs_file(args.name, args.home)}: "
        f"review it (--accept/--reject IDS), then `workbench synth --name {args.name} --apply`"
    )
    return 0


class _StopRequest(threading.Event):
    """Set by Ctrl-C, or by `file` appearing (how the app's background training is cancelled)."""

    def __init__(self, file: Path | None):
        super().__init__()
        self.file = file

    def is_set(self) -> bool:
        return super().is_set() or (self.file is not None and self.file.exists())

    @contextmanager
    def on_ctrl_c(self) -> Iterator[None]:
        """While inside: the first Ctrl-C sets this request (the step in progress finishes), a second one aborts."""

        def request_stop(signum, frame) -> None:
            print("\nstop requested: finishing the current step (Ctrl-C again to abort)", file=sys.stderr)
            self.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _finetune(args: argparse.Namespace) -> int:
    from workbench.finetune import finetune
    from workbench.parallel import join, leave

    stop = _StopRequest(Path(args.stop_file) if args.stop_file else None)
    with stop.on_ctrl_c():
        summary = finetune(
            args.name,
            load_config(args.config),
            args.home,
            max_steps=args.max_steps,
            resume=args.resume,
            stop=stop,
            adapter=args.adapter,
        )
    main = join().main
    leave()
    if not main:  # a data-parallel run prints one summary
        return 0
    forgetting = summary["forgetting"]
    print(
        f"finetuned {args.name}, adapter {summary['adapter']}: {summary['outcome']} after {summary['steps']} steps "
        f"in {summary['train_seconds']:.0f} s; "
        f"best val loss {summary['best_val_loss']:.4f} at step {summary['best_step']}; "
        f"{summary['tokens_per_s']:.0f} tokens/s"
        + (f"; general-text perplexity {forgetting['change_pct']:+.1f}%" if forgetting else "")
    )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from workbench.sweep import run_sweep, table_text

    stop = _StopRequest(Path(args.stop_file) if args.stop_file else None)
    with stop.on_ctrl_c():
        table = run_sweep(
            args.name,
            args.grid,
            load_config(args.config),
            args.home,
            sample=args.random,
            seed=args.seed,
            recipe=args.recipe,
            budget_steps=args.budget_steps,
            promote=args.promote,
            val_limit=args.val_limit,
            stop=stop,
        )
    if table.get("stopped"):
        print(f"sweep {table['id']} stopped on request; the same command continues it")
        return 0
    print(table_text(table))
    where = f"runs/{args.name}/sweeps/{table['id']}.json"
    chosen = f"best: {table['best']} (compare them with `--variants ft:{table['best']},...` in eval or the arena)"
    promoted = f"; ft now means {table['promoted']}" if table["promoted"] else "; `--promote` makes it what ft means"
    print(f"{chosen}{promoted}. Table: {where}" + (f"; val eval {table['eval_id']}" if table["eval_id"] else ""))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from workbench.eval import run_eval
    from workbench.report.summary import eval_summary
    from workbench.store import Store

    variants = None
    if args.variants is not None:
        variants = [v.strip() for v in args.variants.split(",")]
        if not all(variants):
            raise BadInputError(f"--variants {args.variants!r}: give comma-separated names, e.g. base,rag")
    result = run_eval(
        args.name,
        load_config(args.config),
        args.home,
        variants=variants,
        split=args.split,
        limit=args.limit,
        eval_id=args.eval_id,
        judges=args.judges.split(",") if args.judges else None,
        judge_model=args.judge_model,
        stop=_StopRequest(Path(args.stop_file) if args.stop_file else None),
    )
    if result["stopped"]:
        print(
            f"eval {result['eval_id']}: stopped with {result['stored']} of {result['total']} answers stored; "
            "the same command again answers the rest",
            file=sys.stderr,
        )
        return 130
    with Store.open(home=args.home) as store:
        print(eval_summary(store, result["eval_id"]))
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from workbench.report import build_report, load_rows
    from workbench.report.render import render_html, render_markdown
    from workbench.store import Store
    from workbench.workspace import write_text_atomic

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".html", ".md"):
        raise BadInputError(f"--out {args.out}: name an .html or a .md file")
    if out is not None and not out.parent.is_dir():
        raise BadInputError(f"--out {args.out}: folder {out.parent} does not exist; create it or name another")
    if not (resolve_home(args.home) / "runs" / args.name).is_dir():
        raise BadInputError(f"--name {args.name}: no such run in {resolve_home(args.home)}; prepare it first")
    config, pairs = load_config(args.config), [tuple(pair) for pair in args.compare or ()]
    if args.drop_flagged_raters:
        config = config.model_copy(update={"report": config.report.model_copy(update={"drop_flagged_raters": True})})
    with Store.open(home=args.home) as store:
        evals = {row["id"] for row in store.evals(args.name)}
        drift = [pair for pair in pairs if set(pair) <= evals]  # two eval ids: drift; else two variants
        if len(drift) > 1 or (drift and args.eval not in (None, drift[0][1])):
            raise BadInputError("--compare EVAL_A EVAL_B: give one pair of evals; the report is on EVAL_B (--eval)")
        rows = load_rows(store, args.name, config, args.home, drift[0][1] if drift else args.eval)
        before = load_rows(store, args.name, config, args.home, drift[0][0]) if drift else None
    report = build_report(rows, by=args.by or (), compare=[p for p in pairs if p not in drift], before=before)
    if out is not None:
        write_text_atomic(out, render_html(report) if out.suffix.lower() == ".html" else render_markdown(report))
        print(f"report written to {out}: {report['decision']['headline']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif out is None:
        print(render_markdown(report))
    return 0


def _index(args: argparse.Namespace) -> int:
    from workbench.retrieval.index import build_index

    manifest = build_index(args.name, load_config(args.config), args.home, update=args.update)
    build, counts, test = manifest["build"], manifest["counts"], manifest["quality"]["test"]
    print(
        f"indexed {args.name}: {counts['chunks']} chunks from {counts['documents']} documents "
        f"({manifest['index']['type']}; {build['mode']}: {build['embedded_chunks']} embedded, "
        f"{build['reused_chunks']} reused, {build['removed_chunks']} removed) in {build['seconds']:.1f} s"
        + (f"; test recall@5 {test['recall@5']:.3f}, MRR {test['mrr']:.3f}" if test else "")
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    from workbench.retrieval.index import Retriever

    for hit in Retriever.load(args.name, load_config(args.config), args.home).search(args.query, args.k):
        print(f"{hit.rank}. [{hit.score:.3f}] {hit.chunk.id}  {' > '.join(hit.chunk.headings)}")
        print("   " + " ".join(hit.chunk.text.split())[:300])
    return 0


def _prepared_runs(home: str | Path | None) -> list[str]:
    """The runs `prepare` completed: only those have data, and maybe an adapter and index, to answer from."""
    manifests = (resolve_home(home) / "runs").glob("*/manifest.json")
    return sorted(path.parent.name for path in manifests if "prepare" in read_json(path))


def _ask(args: argparse.Namespace) -> int:
    if args.name is not None and args.name not in (runs := _prepared_runs(args.home)):  # before loading a model
        raise BadInputError(
            f"{resolve_home(args.home) / 'runs' / args.name}: no prepared run {args.name!r} "
            f"(prepared runs: {', '.join(runs) or 'none'}); create it with "
            f"`workbench prepare --name {args.name} --corpus PATH`"
        )
    from workbench.engine import Engine
    from workbench.variants import VariantUnavailable

    engine = Engine(load_config(args.config), args.name, args.home)
    requested = args.variants.split(",") if args.variants else engine.config.chat.variants
    unavailable = {name: engine.why_unavailable(name) for name in requested if not name.startswith("remote:")}
    for name, why in unavailable.items():  # an unbuilt or broken adapter or index costs only the variants needing it
        if why:
            print(f"not answering with {name}: {why}", file=sys.stderr)
    variants = [name for name in requested if not unavailable.get(name)]  # the engine refuses unknown remotes
    if not variants:
        raise VariantUnavailable(f"none of the variants {', '.join(requested)} can answer here (see above)")
    for name, answer in engine.answer(args.question, variants).items():
        sources = f"; sources {', '.join(answer.chunk_ids)}" if answer.chunk_ids else ""
        print(
            f"== {name}  (first token {answer.ttft_s or 0:.2f} s, total {answer.total_s:.2f} s, "
            f"{answer.tokens_in} tokens in, {answer.tokens_out} out{sources})"
        )
        print(answer.error or answer.text)
    return 0


def _warn_if_exposed(host: str, what: str, fix: str) -> None:
    """A loud warning when a server without logins listens beyond this machine."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may well resolve to a public address
        loopback = False
    if not loopback:
        print(
            f"WARNING: serving on {host} without logins: anyone who can reach this machine can {what}. "
            f"{fix[0].upper() + fix[1:]}, or keep the default --host 127.0.0.1.",
            file=sys.stderr,
        )


def _serve_api(args: argparse.Namespace) -> int:
    from workbench.engine import Engine
    from workbench.serve_api import load_keys, make_server

    keys = load_keys(args.auth)  # before the model loads, so a bad key file fails at once
    engine = Engine(load_config(args.config), args.name, args.home)
    try:
        server = make_server(engine, args.host, args.port, keys)
    except OSError as exc:
        raise BadInputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.server_address[:2]
    if not keys:
        _warn_if_exposed(host, "use the models", "set keys with --auth FILE or WORKBENCH_API_KEYS")
    print(
        f"serving {', '.join(engine.local_variants())} at http://{host}:{port}/v1 (OpenAI-compatible; "
        f"{'API key required' if keys else 'no API key'}; Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from workbench.report.exports import export_rows, write_rows
    from workbench.store import Store

    if not (resolve_home(args.home) / "runs" / args.name).is_dir():
        raise BadInputError(f"--name {args.name}: no such run in {resolve_home(args.home)}; prepare it first")
    with Store.open(home=args.home) as store:
        count = write_rows(export_rows(store, args.what, args.name), Path(args.out))
    print(f"wrote {count} {args.what} row(s) of {args.name} to {args.out}")
    return 0


def _queue(args: argparse.Namespace) -> int:
    from workbench.rater_queue import load_queue, queue_progress
    from workbench.store import Store

    if not (resolve_home(args.home) / "runs" / args.name).is_dir():
        raise BadInputError(f"--name {args.name}: no such run in {resolve_home(args.home)}; prepare it first")
    with Store.open(home=args.home) as store:
        if args.load:
            variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
            config = load_config(args.config)
            count = load_queue(
                store, args.name, args.load, args.split, variants, args.raters, args.limit, args.home, config.chat
            )
            print(f"queued {count} question(s) of {args.split} as {args.load}; raters take them in the arena")
        for q in queue_progress(store, args.name):
            print(
                f"{q['queue']}: {q['complete']} of {q['questions']} questions rated by {q['raters_wanted']} raters, "
                f"{q['started']} started, {q['votes']} votes ({', '.join(q['variants'])})"
            )
    return 0


def _probe_freshness(args: argparse.Namespace) -> int:
    from workbench.freshness import freshness_file, probe_freshness

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    result = probe_freshness(args.name, load_config(args.config), args.home, args.facts, variants)
    shares = ", ".join(f"{v} {row['new']:.0%}" for v, row in result["variants"].items())
    print(
        f"changed {result['facts']} facts of a copy of {args.name}; index updated in {result['index_update_s']:.1f} s "
        f"(training took {result['retrain_s'] or 0:.0f} s); answers with the new value: {shares}. "
        f"Wrote {freshness_file(args.name, args.home)}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from workbench.judge.checking import check_file

    summary = check_file(args.input, args.output, args.name, load_config(args.config), args.home)
    print(
        f"checked {summary['rows']} answers with the {summary['detector']} detector in {summary['seconds']:.1f} s: "
        f"{summary['flagged']} flagged; wrote {args.output}"
    )
    return 0


def _print_prepare_summary(report: dict) -> None:
    docs, dupes, sizes = report["documents"], report["duplicates"], report["splits"]["sizes"]
    pii = dict(report["pii"]["documents"])
    rows = len(report["files"]["skipped_rows"]) + (len(report["qa"]["skipped_rows"]) if report["qa"] else 0)
    print(
        f"prepared {report['name']}: {docs['kept']} documents kept of {docs['loaded']} "
        f"({len(report['files']['skipped'])} file(s) and {rows} bad row(s) skipped, {len(dupes['exact'])} exact and "
        f"{len(dupes['near'])} near duplicates removed, PII {pii or 'none'}); splits train {sizes['train']} / "
        f"val {sizes['val']} / test {sizes['test']}; leakage {report['leakage']['count']}"
    )


def _demo_inputs() -> tuple[Path, Path]:
    corpus, qa = DEMO_DIR / "corpus", DEMO_DIR / "qa.jsonl"
    if not corpus.is_dir() or not qa.is_file():
        raise BadInputError(f"{DEMO_DIR}: the shipped demo is missing; run from a checkout of the workbench repository")
    return corpus, qa


def _demo(args: argparse.Namespace) -> int:
    """Prepare and index the shipped demo (when not done yet), fine-tune it in the background, and serve it.

    The app opens at once with the base and RAG columns; the fine-tuned columns join when the adapter is ready.
    """
    from workbench.training_job import train_in_background

    config = _demo_workspace(args)
    job = train_in_background("demo", config, args.home)
    if job.status().state == "running":
        print(
            "fine-tuning the demo adapter in the background (the Arena shows its progress, the Train tab its curves, "
            f"{job.log_file} its output); the ft columns join when it is done"
        )
    args.name = "demo"
    return _serve(args)


def _demo_workspace(args: argparse.Namespace) -> Config:
    """Say where the demo's files go, prepare and index it once, and keep the terminal for what users can act on."""
    from workbench.data.prepare import prepare
    from workbench.workspace import index_paths, run_paths

    # Deprecation notices raised inside transformers (e.g. when peft wraps the model): nothing a user can change.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars at every model load
    print(
        f"workspace: {resolve_home(args.home)} (runs/: prepared data, adapters and quality reports; "
        "indexes/: retrieval indexes; workbench.db: answers, judgements and ratings)"
    )
    args.config = args.config or str(DEMO_CONFIG)
    config = load_config(args.config)
    if not run_paths("demo", args.home).quality_json.exists():
        corpus, qa = _demo_inputs()
        _print_prepare_summary(prepare("demo", corpus=[corpus], qa=qa, config=config, home=args.home, progress=False))
    if not index_paths("demo", args.home).manifest.exists():
        _index(argparse.Namespace(name="demo", config=args.config, home=args.home, update=False))
    return config


def _serve(args: argparse.Namespace) -> int:
    from workbench.auth import Users
    from workbench.ui.app import launch

    users = Users.load(args.auth) if args.auth else None  # before anything loads, so a bad file fails at once
    if users is None:
        _warn_if_exposed(args.host, "rate, train and read every rating", "add logins with --auth FILE")
    launch(home=args.home, name=args.name, host=args.host, port=args.port, config=load_config(args.config), users=users)
    return 0


def _add_user(args: argparse.Namespace) -> int:
    from workbench.auth import add_user

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise BadInputError("the two passwords differ; nothing was changed")
    else:  # a script pipes it in: `printf %s "$PASSWORD" | workbench add-user ...`
        password = sys.stdin.readline().rstrip("\n")
    new = add_user(args.auth, args.user, args.role, password)
    print(f"{'added' if new else 'updated'} {args.role} {args.user} in {args.auth}")
    return 0


def _run_name(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _adapter_name(value: str) -> str:
    try:
        return check_adapter_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--auth",
        metavar="FILE",
        help="users file (from `workbench add-user`): each person logs in; raters get the arena and their own "
        "ratings, admins everything. Without it the app has no logins (fine on 127.0.0.1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="workspace folder (default: $WORKBENCH_HOME or the current folder)")
    common.add_argument("--config", help="YAML config file (default: built-in defaults; see configs/)")

    prepare = commands.add_parser("prepare", parents=[common], help="clean, dedup, redact and split a corpus")
    prepare.add_argument("--name", required=True, type=_run_name, help="run name: outputs go to HOME/runs/NAME/")
    prepare.add_argument(
        "--corpus", required=True, action="append", help="folder or file (.md .txt .html .pdf .jsonl .csv); repeatable"
    )
    prepare.add_argument("--qa", help="QA set (.jsonl or .csv with question,answer[,doc_id,type,paraphrases])")
    prepare.add_argument(
        "--skip-bad-rows", action="store_true", help="skip malformed JSONL/CSV rows instead of failing"
    )

    synth = commands.add_parser(
        "synth",
        parents=[common],
        help="generate synthetic QA pairs from a prepared run's documents; review them; add them to the splits",
    )
    synth.add_argument("--name", required=True, type=_run_name, help="run prepared with `workbench prepare`")
    synth.add_argument("--generator", help="local (default: the base chat model) or remote:NAME of chat.remotes")
    synth.add_argument("--per-fact", type=int, help="questions written per fact (a sentence) (default 1)")
    synth.add_argument("--paraphrases", type=int, help="rewordings kept per question, at most (default 2; 0: none)")
    synth.add_argument("--limit-docs", type=int, help="only the run's first N documents")
    synth.add_argument("--accept", metavar="IDS", help="mark these pairs (comma-separated ids) accepted")
    synth.add_argument("--reject", metavar="IDS", help="mark these pairs (comma-separated ids) rejected")
    synth.add_argument(
        "--apply",
        action="store_true",
        help="add the non-rejected pairs to data/{train,val,test}.jsonl (replacing earlier synthetic rows; "
        "pending pairs never go to test)",
    )

    tune = commands.add_parser("finetune", parents=[common], help="train a LoRA adapter on a prepared run")
    tune.add_argument("--name", required=True, type=_run_name, help="run prepared with `workbench prepare`")
    tune.add_argument(
        "--adapter",
        type=_adapter_name,
        help="train into runs/NAME/adapters/ADAPTER/ (default: `default`, or `raft` for the raft recipe); "
        "it answers as the variant ft:ADAPTER",
    )
    tune.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides the config)")
    tune.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    tune.add_argument("--stop-file", help="end cleanly after the current step once this file exists")

    sweep = commands.add_parser(
        "sweep", parents=[common], help="train an adapter per hyperparameter setting and compare them on val"
    )
    sweep.add_argument("--name", required=True, type=_run_name, help="run prepared with `workbench prepare`")
    sweep.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a finetune setting and its values (repeat for more; lr, r, alpha, dropout, batch, wd, warmup are "
        "short for learning_rate, lora_r, lora_alpha, lora_dropout, batch_size, weight_decay, warmup_ratio)",
    )
    sweep.add_argument("--random", type=int, metavar="N", help="try N settings of the grid, drawn with --seed")
    sweep.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    sweep.add_argument("--recipe", choices=["qa", "qa+docs", "paraphrase", "raft"], help="every trial's recipe")
    sweep.add_argument("--budget-steps", type=int, metavar="S", help="at most S optimizer steps per trial")
    sweep.add_argument("--val-limit", type=int, metavar="N", help="score the trials on the first N val questions")
    sweep.add_argument("--promote", action="store_true", help="make the best trial what the variant ft means")
    sweep.add_argument("--stop-file", help="end cleanly after the current step once this file exists")

    evaluate = commands.add_parser(
        "eval", parents=[common], help="answer a held-out split with every variant, score and store the answers"
    )
    evaluate.add_argument("--name", required=True, type=_run_name, help="run prepared with `workbench prepare`")
    evaluate.add_argument(
        "--variants",
        help="comma-separated: base,prompt,ft,rag,ft_rag,ft:ADAPTER,ft_rag:ADAPTER,remote:NAME (default: configured)",
    )
    evaluate.add_argument("--split", default="test", help="test (default), val, or a QA file (.jsonl / .csv)")
    evaluate.add_argument("--limit", type=int, help="only the first N questions")
    evaluate.add_argument(
        "--eval-id", help="resume or name an eval (default: an id that follows the setup, so a rerun resumes)"
    )
    evaluate.add_argument(
        "--judges",
        help="comma-separated: reference (default: every reference judge), a judge name, or an LLM rubric "
        "(correctness, groundedness, helpfulness)",
    )
    evaluate.add_argument(
        "--judge-model", default="local", help="model of the LLM judges: local (default) or remote:NAME"
    )
    evaluate.add_argument("--stop-file", help="end cleanly, keeping the stored answers, once this file exists")

    report = commands.add_parser(
        "report", parents=[common], help="decide between the variants: quality, preference, hallucination, cost"
    )
    report.add_argument("--name", required=True, type=_run_name, help="run to report on")
    report.add_argument("--eval", help="eval id to report (default: the run's latest eval with answers)")
    report.add_argument("--out", help="write the report to FILE.html (one offline file with plots) or FILE.md")
    report.add_argument("--json", action="store_true", help="print every section as one JSON object")
    report.add_argument(
        "--by", action="append", metavar="FIELD", help="also break results down by this QA field; repeatable"
    )
    report.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        help="also compare variant A with B (repeatable); or, given two eval ids, the drift from eval A to eval B",
    )
    report.add_argument(
        "--drop-flagged-raters",
        action="store_true",
        help="leave raters far below the others' agreement out of every human figure (report.drop_flagged_raters)",
    )

    queue = commands.add_parser(
        "queue", parents=[common], help="load a question set for several raters to rate blind; list queues"
    )
    queue.add_argument("--name", required=True, type=_run_name, help="run the raters compare variants of")
    queue.add_argument("--load", metavar="QUEUE", type=_run_name, help="name of a new queue to load (else: list)")
    queue.add_argument("--split", default="test", help="test (default), val or a QA file (.jsonl / .csv)")
    queue.add_argument("--variants", help="comma-separated, 2 to 4 (default: chat.variants)")
    queue.add_argument("--raters", type=int, default=2, help="raters each question is served to (default 2)")
    queue.add_argument("--limit", type=int, help="queue only the first N questions")

    export = commands.add_parser(
        "export", parents=[common], help="write stored ratings, answers or evals, or DPO / SFT data from the votes"
    )
    export.add_argument("--name", required=True, type=_run_name, help="run whose rows to export")
    export.add_argument(
        "--what", required=True, choices=["ratings", "answers", "evals", "dpo", "sft"], help="which rows (README)"
    )
    export.add_argument("--out", required=True, help="FILE.jsonl, FILE.csv, or a folder for a `datasets` dataset")

    fresh = commands.add_parser(
        "probe-freshness",
        parents=[common],
        help="change facts in a copy of the run, update its index, and see which variants give the new values",
    )
    fresh.add_argument("--name", required=True, type=_run_name, help="run prepared (with a QA set) and indexed")
    fresh.add_argument("--facts", type=int, default=20, help="facts to change (default 20)")
    fresh.add_argument("--variants", help="comma-separated (default: every built-in variant that can answer)")

    index = commands.add_parser("index", parents=[common], help="chunk, embed and index a prepared run's corpus")
    index.add_argument("--name", required=True, type=_run_name, help="run prepared with `workbench prepare`")
    index.add_argument("--update", action="store_true", help="re-embed only added or changed documents")

    search = commands.add_parser("search", parents=[common], help="search a run's index")
    search.add_argument("--name", required=True, type=_run_name, help="run indexed with `workbench index`")
    search.add_argument("query", help="question or keywords")
    search.add_argument("-k", type=int, default=5, help="number of chunks (default 5)")

    ask = commands.add_parser("ask", parents=[common], help="answer one question with every variant side by side")
    ask.add_argument("--name", type=_run_name, help="run whose adapter and index the variants use")
    ask.add_argument("--variants", help="comma-separated variants (default: every available one)")
    ask.add_argument("question")

    api = commands.add_parser("serve-api", parents=[common], help="serve the variants as an OpenAI-compatible API")
    api.add_argument("--name", type=_run_name, help="run whose adapter and index the variants use")
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument(
        "--auth",
        metavar="FILE",
        help="API keys, one a line (# starts a comment); clients send `Authorization: Bearer KEY`. Without "
        "--auth the keys come from $WORKBENCH_API_KEYS (comma-separated); with neither, no key is needed",
    )

    check = commands.add_parser("check", parents=[common], help="flag unsupported claims in a JSONL file of answers")
    check.add_argument("--input", required=True, help="JSONL rows with question, answer and optional context")
    check.add_argument("--output", required=True, help="JSONL file to write the rows with their verdicts to")
    check.add_argument(
        "--name", type=_run_name, help="run whose index gives evidence (needed for rows without context)"
    )

    serve = commands.add_parser("serve", parents=[common], help="start the web app")
    serve.add_argument("--name", type=_run_name, help="run to open (default: the first run in HOME/runs)")
    _add_serve_options(serve)

    demo = commands.add_parser("demo", parents=[common], help="prepare the shipped demo, then serve it")
    _add_serve_options(demo)

    user = commands.add_parser(
        "add-user", help="add a login to a users file for `serve --auth` (password from the prompt or stdin)"
    )
    user.add_argument("--auth", required=True, metavar="FILE", help="users file (made if missing, mode 0600)")
    user.add_argument("--user", required=True, help="login name")
    user.add_argument("--role", required=True, choices=["rater", "admin"], help="rater: the arena; admin: all")
    return parser


COMMANDS = {
    "prepare": _prepare,
    "synth": _synth,
    "finetune": _finetune,
    "sweep": _sweep,
    "eval": _eval,
    "report": _report,
    "queue": _queue,
    "export": _export,
    "probe-freshness": _probe_freshness,
    "index": _index,
    "search": _search,
    "ask": _ask,
    "serve-api": _serve_api,
    "check": _check,
    "serve": _serve,
    "demo": _demo,
    "add-user": _add_user,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BadInputError, ConfigError, ModelNotAvailable) as exc:
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
