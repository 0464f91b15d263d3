"""The decision report over stored rows: the decision rule on constructed evals, every section from a store with
no model present, the CLI's outputs and errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_store import answer
from workbench.cli import main
from workbench.config import Config
from workbench.report import build_report, load_rows
from workbench.report.stats import items_needed
from workbench.store import Store
from workbench.workspace import run_paths, write_json_atomic

VARIANTS = ["base", "ft", "rag", "ft_rag"]


def question_row(qa_id: str, kind: str, product: str) -> dict:
    answer = "I don't know; the sources do not say." if kind == "unanswerable" else f"The answer to {qa_id} is 42."
    return {
        "id": qa_id,
        "messages": [{"role": "user", "content": f"Question {qa_id}?"}, {"role": "assistant", "content": answer}],
        "origin": "qa",
        "kind": "qa",
        "group": 0,
        "question": f"Question {qa_id}?",
        "answer": answer,
        "doc_ids": [] if kind == "unanswerable" else ["doc-a"],
        "type": kind,
        "fields": {"product": product},
    }


def stored_eval(home, scores: dict[str, list[float]], kinds: list[str], run: str = "r1", eval_id: str = "e1"):
    """A run folder with a test split and a store holding eval `eval_id`: `scores[variant][i]` is the token F1
    of the variant's answer to question i (of type `kinds[i]`); unanswerable questions are marked as the judges
    mark them."""
    paths = run_paths(run, home)
    paths.data.mkdir(parents=True, exist_ok=True)
    ids = [f"Q{i:03d}" for i in range(len(kinds))]
    rows = [question_row(q, k, "S2" if i % 2 else "S3") for i, (q, k) in enumerate(zip(ids, kinds))]
    paths.split("test").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json_atomic(paths.manifest, {"name": run})
    with Store.open(home=home) as store:
        store.ensure_run(run)
        variants = list(scores)
        store.start_eval(eval_id, run, "test", variants, ["token_f1"], "h", {}, "m", {}, None, len(ids))
        for variant in variants:
            for i, qa_id in enumerate(ids):
                details = (
                    {"unanswerable": True, "abstained": bool(scores[variant][i] == 1.0)}
                    if kinds[i] == "unanswerable"
                    else {}
                )
                record = answer(
                    qa_id,
                    variant,
                    id=f"{eval_id}-{qa_id}-{variant}",  # an eval's answer: add_eval_answer ignores its turn id
                    question=f"Question {qa_id}?",
                    text="word " * (5 + i % 7),
                    total_s=1.0 + (3.0 if "rag" in variant else 0.0),
                    tokens_in=500 if "rag" in variant else 50,
                    tokens_out=20,
                )
                judgement = {
                    "judge": "token_f1",
                    "score": float(scores[variant][i]),
                    "reason": None,
                    "details": details,
                }
                store.add_eval_answer(eval_id, qa_id, record, None, [judgement])
    return ids


def report_of(home, run="r1", config=None, **kwargs) -> dict:
    with Store.open(home=home) as store:
        rows = load_rows(store, run, config or Config(), home)
    return build_report(rows, **kwargs)


def noisy(rng, base: np.ndarray, shift: float, noise: float) -> list[float]:
    return list(np.clip(base + shift + rng.normal(0, noise, base.size), 0, 1))


def test_a_clear_win_is_recommended(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 40)
    scores = {"base": list(base), "ft": noisy(rng, base, 0.05, 0.05), "rag": noisy(rng, base, 0.3, 0.05)}
    stored_eval(tmp_path, scores, ["fact"] * 40)
    decision = report_of(tmp_path)["decision"]
    assert decision["status"] == "recommend" and decision["recommendation"] == "rag"
    assert all(d["significant"] and d["low"] > 0 for d in decision["against"].values())
    assert decision["headline"].startswith("Recommend rag")
    assert any("rag against ft:" in r for r in decision["reasons"])


def test_a_clear_loss_recommends_the_base_model(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.6, 40)
    scores = {"base": list(base), "ft": noisy(rng, base, -0.2, 0.05)}
    stored_eval(tmp_path, scores, ["fact"] * 40)
    decision = report_of(tmp_path)["decision"]
    assert (decision["status"], decision["recommendation"]) == ("recommend", "base")
    assert decision["against"]["ft"]["mean"] == pytest.approx(0.2, abs=0.03)


def test_not_significant_says_how_many_more_questions_would_settle_it(tmp_path):
    # paired differences of mean 0.02 and spread 0.15: too small a lead for 30 questions
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.6, 30)
    scores = {"rag": list(base + 0.02 + 0.15 * np.resize([1, -1], 30)), "ft": list(base)}
    stored_eval(tmp_path, scores, ["fact"] * 30)
    decision = report_of(tmp_path)["decision"]
    assert decision["status"] == "not_significant" and decision["recommendation"] is None
    diff = decision["against"][decision["more_questions"]["against"]]
    assert diff["low"] < 0 < diff["high"]
    more = decision["more_questions"]
    assert more["needed"] == items_needed(diff["mean"], diff["sd"]) > 30 and more["more"] == more["needed"] - 30
    assert "Not yet significant" in decision["headline"] and f"about {more['more']} more" in decision["headline"]
    # the estimate is right in kind: that many questions with the same mean and spread are significant
    d = rng.normal(diff["mean"], diff["sd"], (200, more["needed"]))
    from scipy import stats

    assert np.mean(stats.ttest_1samp(d, 0, axis=1).pvalue < 0.05) > 0.7


def test_a_lead_one_slice_decides_is_qualified(tmp_path):
    # ft abstains on the 10 unanswerable questions and rag does not; on the 30 answerable ones rag leads.
    rng = np.random.default_rng(3)
    kinds = ["unanswerable"] * 10 + ["fact"] * 30
    answerable = rng.uniform(0.2, 0.6, 30)
    scores = {
        "ft": [1.0] * 10 + list(answerable),
        "rag": [0.0] * 10 + noisy(rng, answerable, 0.05, 0.01),
    }
    stored_eval(tmp_path, scores, kinds)
    report = report_of(tmp_path)
    decision = report["decision"]
    assert decision["status"] == "qualified" and decision["recommendation"] == "ft"
    driver = decision["drivers"][0]
    assert (driver["grouping"], driver["group"], driver["questions"], driver["leader_without"]) == (
        "answerable",
        "unanswerable",
        10,
        "rag",
    )
    assert "only because of the unanswerable questions (10 of 40" in decision["headline"]
    quality = report["quality"]["variants"]
    assert quality["ft"]["abstention"]["mean"] == 1.0 and quality["rag"]["abstention"]["mean"] == 0.0
    assert quality["rag"]["knowledge"]["mean"] > quality["ft"]["knowledge"]["mean"]
    groups = report["breakdowns"]["type"]["groups"]
    assert groups["fact"]["leader"] == "rag" and groups["unanswerable"]["leader"] == "ft"
    assert report["breakdowns"]["type"]["largest_gap"]["rag"]["low"] == "unanswerable"


def test_breakdown_by_a_qa_field_and_unknown_fields(tmp_path):
    rng = np.random.default_rng(4)
    stored_eval(tmp_path, {"base": list(rng.uniform(0, 1, 12)), "rag": list(rng.uniform(0, 1, 12))}, ["fact"] * 12)
    report = report_of(tmp_path, by=["product"])
    groups = report["breakdowns"]["product"]["groups"]
    assert set(groups) == {"S2", "S3"} and groups["S2"]["questions"] == 6
    with pytest.raises(Exception, match="no field 'channel'.*doc_id.*product"):
        report_of(tmp_path, by=["channel"])
    assert set(report_of(tmp_path, by=["doc_id"])["breakdowns"]["doc_id"]["groups"]) == {"doc-a"}


def test_the_latest_eval_is_reported_with_a_pointer_to_a_larger_one(tmp_path):
    stored_eval(tmp_path, {"base": [0.2] * 6, "rag": [0.5] * 6}, ["fact"] * 6)
    with Store.open(home=tmp_path) as store:  # a later, one-question eval
        store.start_eval("e2", "r1", "test", ["base"], ["token_f1"], "h", {}, "m", {}, None, 1)
        first = store.answers(eval_id="e1")[0]
        extra = ("conversation_id", "created_at", "eval_id", "gold_rank", "position", "qa_id", "run")
        record = {k: v for k, v in first.items() if k not in extra} | {"id": "x"}
        store.add_eval_answer("e2", first["qa_id"], record, None, [])
    report = report_of(tmp_path)
    assert report["eval"]["id"] == "e2"
    assert any("eval e1 has more (12)" in note and "--eval e1" in note for note in report["notes"])


def add_arena(home, run: str = "r1", turns: int = 12) -> None:
    """Rated arena turns of base, ft and rag: rag best in two of three turns, a tie in the third; stars, human
    flags, judge scores and detector claims on every answer."""
    with Store.open(home=home) as store:
        cid = store.start_conversation(run, "ann", ["base", "ft", "rag"], ["rag", "base", "ft"])
        for t in range(turns):
            turn = f"t{t}"
            store.add_turn(cid, turn, "What is WAL?")
            for variant in ("base", "ft", "rag"):
                answer_id = f"{turn}-{variant}"
                store.add_answer(
                    answer(
                        turn,
                        variant,
                        text="long " * (30 if variant == "rag" else 8),
                        total_s=2.0,
                        tokens_in=40,
                        tokens_out=12,
                    )
                )
                good = variant == "rag"
                store.add_judgement(answer_id, "token_f1", 0.8 if good else 0.2 + 0.01 * t, None, {})
                claim = {"claim": "WAL is a log.", "score": 0.2 if good else 0.9, "supported": good, "evidence": []}
                store.add_claims(answer_id, "evidence", [claim])
                vote = "best" if good and t % 3 != 2 else None
                store.add_rating(
                    turn, "ann", answer_id, stars=5 if good else 2 + t % 2, vote=vote, hallucinated=not good
                )
            if t % 3 == 2:
                store.add_rating(turn, "ann", vote="tie")


def test_every_section_from_a_store_without_a_model(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.uniform(0.1, 0.5, 20)
    stored_eval(
        tmp_path, {"base": list(base), "rag": noisy(rng, base, 0.2, 0.05)}, ["fact"] * 18 + ["unanswerable"] * 2
    )
    add_arena(tmp_path)
    code = (
        "import sys, json, io, contextlib\n"
        "from workbench.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['report', '--name', 'r1', '--home', {str(tmp_path)!r}, '--json'])\n"
        "assert code == 0, code\n"
        "assert not {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules), 'a model library loaded'\n"
        "print(out.getvalue())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for section in (
        "decision",
        "quality",
        "preference",
        "hallucination",
        "breakdowns",
        "attribution",
        "cost",
        "training",
    ):
        assert section in report
    assert report["decision"]["recommendation"] == "rag"
    preference = report["preference"]
    assert preference["votes"] == 12 and preference["outcomes"] == {"best": 8, "tie": 4, "all_bad": 0}
    assert next(iter(preference["bradley_terry"]["variants"])) == "rag"
    assert preference["win_rates"]["rate"]["rag"]["base"] == pytest.approx((8 + 0.5 * 4) / 12)
    assert preference["stars"]["rag"]["mean"] == 5.0 and preference["states_false"]["base"]["rate"] == 1.0
    trust = report["hallucination"]["trust"]
    assert trust["kappa_vs_raters"]["value"] == pytest.approx(1.0) and trust["kappa_vs_raters"]["n"] == 36
    assert trust["judges_vs_stars"]["token_f1"]["value"] > 0.5
    assert report["hallucination"]["arena"]["rag"]["rate"] == 0.0
    assert any("raters agree" in r for r in report["decision"]["reasons"])


def test_report_cli_writes_html_and_markdown_and_names_bad_input(tmp_path, capsys):
    stored_eval(tmp_path, {"base": [0.2] * 6, "rag": [0.5] * 6}, ["fact"] * 6)
    html, md = tmp_path / "report.html", tmp_path / "report.md"
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--out", str(html)]) == 0
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--out", str(md)]) == 0
    assert html.read_text().lstrip().lower().startswith("<!doctype html>") and "e1" in md.read_text()
    assert main(["report", "--name", "r1", "--home", str(tmp_path)]) == 0
    assert "Recommend rag" in capsys.readouterr().out
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--eval", "nope"]) == 2
    assert "no such eval (its evals: e1)" in capsys.readouterr().err
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--out", str(tmp_path / "no" / "r.md")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert html.stat().st_mode & 0o044 == 0o044  # readable by others, as files the user writes are
    assert main(["report", "--name", "r1", "--home", str(tmp_path), "--compare", "ft", "rag"]) == 2
    assert "no variant ft" in capsys.readouterr().err
    assert main(["report", "--name", "nobody", "--home", str(tmp_path)]) == 2


def test_a_run_without_an_eval_reports_what_it_has(tmp_path):
    stored_eval(tmp_path, {"base": [0.2] * 3}, ["fact"] * 3, run="other")
    run_paths("r1", tmp_path).root.mkdir(parents=True)
    with Store.open(home=tmp_path) as store:
        store.ensure_run("r1")
    add_arena(tmp_path)
    report = report_of(tmp_path)
    assert report["decision"]["status"] == "no_eval" and "workbench eval --name r1" in report["decision"]["headline"]
    assert report["quality"] is None and report["preference"]["votes"] == 12


def test_cost_per_answer_and_break_even_with_prices(tmp_path):
    # ft answers in 1 s, rag in 4 s (its prompt carries sources); ft trained 10 minutes on a GPU
    stored_eval(tmp_path, {"ft": [0.5] * 4, "rag": [0.5] * 4}, ["fact"] * 4)
    machine = {"kind": "gpu", "name": "H200", "cores": 16, "peak_memory_mb": 9000.0}
    trained = run_paths("r1", tmp_path)
    write_json_atomic(trained.adapter_manifest, {"wall_seconds": 600.0, "machine": machine, "trainable_params": 10})
    write_json_atomic(trained.adapter / "adapter_config.json", {})
    config = Config.model_validate({"report": {"cpu_hour": 0.36, "gpu_hour": 3.6}})
    cost = report_of(tmp_path, config=config)["cost"]
    wall = cost["answering_seconds"]  # the eval's answering time, shared out by latency: ft 4 s of 20, rag 16 s
    ft, rag = cost["answers"]["ft"], cost["answers"]["rag"]
    assert (ft["machine_seconds"], rag["machine_seconds"]) == pytest.approx((wall * 4 / 20 / 4, wall * 16 / 20 / 4))
    assert 4 * ft["machine_seconds"] + 4 * rag["machine_seconds"] == pytest.approx(wall)
    assert ft["per_1000_answers"] == pytest.approx(1000 * ft["machine_seconds"] / 3600 * 0.36)
    assert cost["training"]["ft"]["cost"] == pytest.approx(0.6)  # priced at the GPU's hour
    [even] = cost["break_even"]
    saving = rag["machine_seconds"] - ft["machine_seconds"]
    assert even["answers"] == pytest.approx(600 / saving)
    per_answer = (rag["per_1000_answers"] - ft["per_1000_answers"]) / 1000
    assert even["answers_priced"] == pytest.approx(0.6 / per_answer)  # the GPU hour costs 10x: 10x the answers
    assert even["answers_priced"] == pytest.approx(10 * even["answers"])
    assert report_of(tmp_path)["cost"]["answers"]["ft"]["per_1000_answers"] is None  # no prices, no money


def test_answering_seconds_leaves_out_pauses():
    from workbench.report.cost import answering_seconds

    def at(second: float, latency: float) -> dict:
        return {"created_at": f"2026-11-30T10:{int(second // 60):02d}:{second % 60:06.3f}+00:00", "total_s": latency}

    # 2 s to the first answer, answers every second, a 20-minute pause (stopped and resumed), then 3 more
    answers = [at(2, 2.0), at(3, 1.5), at(4, 1.0)] + [at(1204 + k, 1.0 + k) for k in range(3)]
    assert answering_seconds(answers) == pytest.approx(2.0 + 1 + 1 + 1.0 + 1 + 1)
    assert answering_seconds([]) is None
