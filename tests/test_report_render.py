"""The report's views: Markdown and self-contained HTML with inline SVG plots, from the report dict.

Three reports: one shaped like the shipped demo's (eval, one adapter, index, no votes), a full one (votes from
simulated arena rows through `preference_section`, arena flags and agreement, prices, two adapters with events, a
qualified decision) and an empty one (`build_report` on a run with nothing: no eval, no adapter, no votes).
"""

import copy
import random
import re

import pytest

from workbench.config import Config
from workbench.report import plots
from workbench.report.agreement import cohen_kappa, spearman
from workbench.report.build import build_report
from workbench.report.preference import preference_section
from workbench.report.render import SECTIONS, render_html, render_html_body, render_markdown
from workbench.report.rows import ReportRows
from workbench.report.stats import rate_interval

EVIL = "<script>alert(1)</script>|x"
"""A variant name a user could give: HTML and a Markdown table separator."""

VARIANTS = ["base", "ft", "rag", "ft_rag"]


# -- the reports ------------------------------------------------------------------------------------------------------


def interval(mean, low, high, n):
    return {"mean": mean, "low": low, "high": high, "n": n}


def difference(mean, low, high, p, adjusted, significant, n=42):
    return interval(mean, low, high, n) | {"sd": 0.3, "p": p, "p_adjusted": adjusted, "significant": significant}


def demo_report() -> dict:
    """The shape (and some figures) of the demo's `workbench report --json`: 4 variants, no arena votes."""
    metric_means = {"base": 0.18478665813673414, "ft": 0.2652515219488542, "rag": 0.3037521788467826, "ft_rag": 0.2848}
    quality_variants = {
        v: {
            "token_f1": interval(m, m - 0.06, m + 0.07, 42),
            "key_facts": interval(m / 2, max(m / 2 - 0.08, 0), m / 2 + 0.09, 41),
            "knowledge": interval(m / 2, max(m / 2 - 0.09, 0), m / 2 + 0.09, 38),
            "abstention": interval(0.0, 0.0, 0.0, 3) if v in ("base", "rag") else interval(1.0, 1.0, 1.0, 3),
        }
        for v, m in metric_means.items()
    }
    quality_variants["rag"]["token_f1"] = interval(0.3037521788467826, 0.242913486526191, 0.3690773145550717, 42)
    comparisons = [
        ("ft", "base", "against the base model", difference(0.0805, -0.0022, 0.1740, 0.096, 0.288, False)),
        ("rag", "base", "against the base model", difference(0.11896552, 0.063159, 0.176256, 0.0004, 0.002, True)),
        ("ft_rag", "base", "against the base model", difference(0.09998, 0.01765, 0.19206, 0.0402, 0.1608, False)),
        ("ft", "rag", "fine-tuning against retrieval", difference(-0.0385, -0.1431, 0.0749, 0.5046, 1.0, False)),
        ("ft_rag", "rag", "both against the better single option", difference(-0.019, -0.1087, 0.08, 0.7, 1.0, False)),
    ]
    flag = {"base": (25, 42), "ft": (16, 42), "rag": (16, 42), "ft_rag": (12, 42)}
    machine_seconds = {"base": 20.57892125583324, "ft": 8.054605797595112, "rag": 19.434571462904604, "ft_rag": 11.19}
    curve = [
        {"step": float(s), "train_loss": 3.1 - 0.015 * s + 0.2 * ((s * 7) % 5 - 2) / 2, "val_loss": None}
        for s in range(1, 61)
    ]
    for row in curve:
        if row["step"] % 20 == 0:
            row["val_loss"] = 2.7 - row["step"] / 400
    return {
        "run": "demo",
        "settings": {"metric": "token_f1", "confidence": 0.95, "bootstrap_rounds": 2000, "preference_rounds": 200},
        "eval": {
            "id": "test-2bc8237bdc",
            "split": "test",
            "variants": list(VARIANTS),
            "judges": ["token_f1", "key_facts"],
            "questions": 42,
            "answers": 168,
            "errors": 0,
            "started_at": "2026-11-30T12:39:51+00:00",
            "finished_at": "2026-11-30T12:42:38+00:00",
            "model_id": "smollm2-135m-instruct@b179c9523d0e6a0f",
            "adapter_ids": {"ft": "63b12e64ae332733", "ft_rag": "63b12e64ae332733"},
            "index_id": "7e20c8921738eb4e",
        },
        "decision": {
            "metric": "token_f1",
            "questions": 42,
            "means": dict(metric_means),
            "leader": "rag",
            "against": {"ft_rag": comparisons[4][3], "ft": comparisons[3][3], "base": comparisons[1][3]},
            "undecided": ["rag", "ft_rag", "ft"],
            "more_questions": {"against": "ft_rag", "needed": 2901, "more": 2859},
            "drivers": [],
            "status": "not_significant",
            "recommendation": None,
            "headline": "Not yet significant: rag leads on token_f1 (0.304), but ft_rag (0.285) is within the noise.",
            "reasons": [
                "rag against ft_rag: +0.019 [-0.080, 0.109], corrected p = 1.000 over 42 questions",
                "no rated arena turns yet: the human preference is unknown",
            ],
        },
        "drift": None,
        "freshness": None,
        "raters": None,
        "quality": {
            "metric": "token_f1",
            "judges": ["token_f1", "key_facts"],
            "variants": quality_variants,
            "knowledge_judge": "key_facts",
            "comparisons": [
                {"a": a, "b": b, "why": why, "judges": {"token_f1": d, "key_facts": d}} for a, b, why, d in comparisons
            ],
            "questions": 42,
            "unanswerable": 3,
        },
        "preference": {
            "votes": 0,
            "outcomes": {"best": 0, "tie": 0, "all_bad": 0},
            "stars": {},
            "states_false": {},
            "variants": [],
            "win_rates": None,
            "bradley_terry": None,
            "length_controlled": None,
        },
        "hallucination": {
            "detectors": ["evidence"],
            "eval": {v: rate_interval(*flag[v]) for v in VARIANTS},
            "arena": {},
            "trust": {
                "judges_vs_stars": {},
                "flags_vs_wrong_answers": {
                    "answers": 156,
                    "wrong": 133,
                    "metric": "token_f1",
                    "wrong_below": 0.5,
                    "auroc": 0.5781301078783916,
                    "length_auroc": 0.5966001961425302,
                },
            },
        },
        "breakdowns": {
            "type": {
                "groups": {
                    group: {
                        "questions": n,
                        "variants": {
                            v: interval(m * scale, m * scale - 0.05, m * scale + 0.05, n)
                            for v, m in metric_means.items()
                        },
                        "leader": "rag",
                    }
                    for group, n, scale in (("fact", 14, 1.05), ("numeric", 15, 1.17), ("procedure", 5, 0.6))
                },
                "largest_gap": {"rag": {"gap": 0.3558050711027326, "high": "numeric", "low": "procedure"}},
            }
        },
        "attribution": {
            "wrong_below": 0.5,
            "variants": {
                "rag": {
                    "answers": 39,
                    "gold_shown": 1.0,
                    "wrong": 31,
                    "generator_failed": 31,
                    "retrieval_missed": 0,
                    "retrieval_missed_share": 0.0,
                }
            },
        },
        "cost": {
            "currency": "USD",
            "prices": {"cpu_hour": None, "gpu_hour": None},
            "training": {
                "ft": {
                    "adapter": "default",
                    "recipe": "qa",
                    "wall_seconds": 606.9714776729998,
                    "steps": 60,
                    "machine": None,
                    "trainable_params": 4884480,
                    "total_params": 139399488,
                    "adapter_bytes": 19599608,
                    "cost": None,
                }
            },
            "index": {"seconds": 8.708452741999281, "bytes": 677219, "chunks": 289, "documents": 44, "cost": None},
            "answers": {
                v: {
                    "latency_s": {"p50": s * 0.9, "p95": s * 2.1, "n": 42},
                    "first_token_s": {"p50": 0.17, "p95": 0.33, "n": 42},
                    "tokens_in": 572.0 if "rag" in v else 46.0,
                    "tokens_out": 40.0,
                    "machine_seconds": s,
                    "per_1000_answers": None,
                }
                for v, s in machine_seconds.items()
            },
            "break_even": [
                {
                    "variant": "ft",
                    "against": "rag",
                    "one_off_seconds": 598.2630249310005,
                    "saving_seconds_per_answer": 11.379965665309491,
                    "answers": 52.57160192976119,
                }
            ],
            "eval_machine": None,
        },
        "training": {
            "default": {
                "variants": ["ft"],
                "recipe": "qa",
                "outcome": "completed",
                "steps": 60,
                "best_step": 60,
                "best_val_loss": 2.549217930623442,
                "forgetting": {
                    "text": "demo/general.txt",
                    "base_perplexity": 22.879153234033016,
                    "finetuned_perplexity": 22.71668556569283,
                    "change_pct": -0.7101122435707622,
                },
                "curve": curve,
                "events": [],
            }
        },
        "notes": [],
        "seconds": 0.6,
    }


def simulated_arena(turns: int = 80, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Arena rows (`Store.answers` / `Store.ratings` shape) of 4-way turns: rag wins most, ties and all-bad votes
    happen, longer answers win a little more often; plus stars and "states something false" flags per answer."""
    rng = random.Random(seed)
    strength = {"base": 0.0, "ft": 0.6, "rag": 1.4, "ft_rag": 1.0}
    answers, ratings = [], []
    for t in range(turns):
        turn = f"turn-{t}"
        columns = []
        for v in VARIANTS:
            words = rng.randint(5, 60)
            answers.append({"id": f"{turn}-{v}", "turn_id": turn, "variant": v, "text": " ".join(["w"] * words)})
            columns.append((v, words))
        draw = rng.random()
        vote = {"turn_id": turn, "stars": None, "hallucinated": None}
        if draw < 0.08:
            ratings.append(vote | {"vote": "tie", "answer_id": None, "variant": None})
        elif draw < 0.13:
            ratings.append(vote | {"vote": "all_bad", "answer_id": None, "variant": None})
        else:
            weights = [2.718 ** (strength[v] + words / 60) for v, words in columns]
            winner = rng.choices([v for v, _ in columns], weights)[0]
            ratings.append(vote | {"vote": "best", "answer_id": f"{turn}-{winner}", "variant": winner})
        for v, _ in columns:
            if rng.random() < 0.5:
                ratings.append(
                    {
                        "turn_id": turn,
                        "vote": None,
                        "answer_id": f"{turn}-{v}",
                        "variant": v,
                        "stars": rng.randint(1, 3) + round(strength[v]),
                        "hallucinated": rng.random() < 0.4 - strength[v] / 5,
                    }
                )
    return answers, ratings


def full_report() -> dict:
    """The demo's shape with every section full: votes, arena flags and agreement, prices, two adapters with events,
    a qualified decision with its driver, notes."""
    report = demo_report()
    answers, ratings = simulated_arena()
    report["preference"] = preference_section(ReportRows("demo", Config(), arena_answers=answers, ratings=ratings))
    rng = random.Random(3)
    report["hallucination"]["arena"] = {v: rate_interval(rng.randint(3, 20), 40) for v in VARIANTS}
    auto = [rng.random() < 0.4 for _ in range(50)]
    human = [a if rng.random() < 0.8 else not a for a in auto]
    report["hallucination"]["trust"]["kappa_vs_raters"] = cohen_kappa(auto, human).to_dict()
    scores = [rng.random() for _ in range(30)]
    report["hallucination"]["trust"]["judges_vs_stars"] = {
        "token_f1": spearman(scores, [round(4 * s) + 1 for s in scores]).to_dict(),
        "rouge_l": spearman([0.5] * 4, [1, 2, 3, 4]).to_dict(),
    }
    report["decision"] |= {
        "status": "qualified",
        "recommendation": "rag",
        "more_questions": None,
        "headline": "rag leads on token_f1 (0.304), but only because of the numeric questions (15 of 42, by type).",
        "drivers": [
            {
                "grouping": "type",
                "group": "numeric",
                "questions": 15,
                "of": 42,
                "without": {"rag": 0.281, "ft_rag": 0.292},
                "leader_without": "ft_rag",
            }
        ],
    }
    cost = report["cost"]
    cost["prices"]["cpu_hour"] = 0.5
    for row in cost["answers"].values():
        row["per_1000_answers"] = row["machine_seconds"] * 1000 / 3600 * 0.5
    cost["training"]["ft"]["cost"] = cost["training"]["ft"]["wall_seconds"] / 3600 * 0.5
    cost["training"]["ft"]["machine"] = {"kind": "cpu", "name": "Test CPU", "cores": 16, "peak_memory_mb": 2048.5}
    cost["training"]["ft_rag"] = cost["training"]["ft"] | {
        "adapter": "raft",
        "wall_seconds": 700.0,
        "cost": 700 / 3600 * 0.5,
    }
    cost["index"]["cost"] = cost["index"]["seconds"] / 3600 * 0.5
    report["training"]["raft"] = copy.deepcopy(report["training"]["default"]) | {
        "variants": ["ft_rag"],
        "outcome": "stopped early",
        "best_step": 40,
        "best_val_loss": 2.6,
        "forgetting": None,
        "events": [
            {"step": 33, "kind": "spike", "message": "train loss 9.1 | spiked\nlower the <b>learning rate</b>"},
            {"step": 60, "kind": "overfit", "message": "val loss rose for 1 evaluation(s) while train loss fell"},
        ],
    }
    report["notes"] = ["breakdowns by question are partial | see\nthe QA file"]
    return report


def rename(value, old: str, new: str):
    """`value` with every dict key and string equal to `old` replaced by `new`, at any depth."""
    if isinstance(value, dict):
        return {(new if k == old else k): rename(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [rename(v, old, new) for v in value]
    return new if value == old else value


def empty_report() -> dict:
    """What `build_report` gives a run with no eval, no adapter, no index and no arena votes."""
    return build_report(ReportRows("empty", Config()))


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {"demo": demo_report(), "full": full_report(), "empty": empty_report()}


@pytest.fixture(scope="module")
def rendered(reports) -> dict[str, tuple[str, str]]:
    """(Markdown, HTML) of each report, rendered once."""
    return {name: (render_markdown(report), render_html(report)) for name, report in reports.items()}


# -- helpers ----------------------------------------------------------------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    """Each Markdown table as its lines."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def cell_separators(line: str) -> int:
    """Unescaped `|` in a table line (a backslash escapes the character after it)."""
    return re.sub(r"\\.", "", line).count("|")


# -- tests ------------------------------------------------------------------------------------------------------------


def test_the_demo_like_report_has_the_builders_shape(reports):
    assert set(reports["demo"]) == set(reports["empty"])
    assert set(reports["full"]["preference"]) >= {"votes", "bradley_terry", "length_controlled", "win_rates"}
    assert reports["full"]["preference"]["votes"] == 80


@pytest.mark.parametrize("name", ["demo", "full", "empty"])
def test_markdown_puts_the_decision_first_and_has_every_section(reports, rendered, name):
    report = reports[name]
    md = rendered[name][0]
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == list(SECTIONS)
    headline = report["decision"]["headline"].split("`")[0]
    assert md.index("## Decision") < md.index(headline) < md.index("## Quality")
    assert md.startswith(f"# workbench report: {report['run']}")


@pytest.mark.parametrize("name", ["demo", "full", "empty"])
def test_html_puts_the_decision_first_and_has_every_section(reports, rendered, name):
    report = reports[name]
    page = rendered[name][1]
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    positions = [page.index(f"<h2>{section}</h2>") for section in SECTIONS]
    assert positions == sorted(positions)
    headline = report["decision"]["headline"].split("`")[0]
    assert positions[0] < page.index(headline) < positions[1]
    if name == "demo":
        body = render_html_body(report)
        assert "<html" not in body and "<head" not in body and body in page


def test_demo_figures_are_formatted_from_the_dict(rendered):
    md, page = rendered["demo"]
    for text in (
        "| rag | 0.304 [0.243, 0.369] |",  # quality table: mean [low, high] with 3 decimals
        "| rag - base | against the base model | +0.119 [0.063, 0.176] | 0.002 | yes | 42 |",
        "| base | 59.5% [44.5%, 73.0%] | 25 / 42 |",  # flag rate with its Wilson interval
        "| ft | rag | 598 s (10.0 min) | 11.38 s | 53 |",  # break-even answers
        "AUROC 0.578 against 0.597 for answer length alone",
        "about 2859 more (2901 in all)",
        "No arena votes yet",
        "22.88 before, 22.72 after (-0.7%)",
    ):
        assert text in md, text
    assert "0.304 [0.243, 0.369]" in page and "59.5% [44.5%, 73.0%]" in page
    assert 'class="status status-not_significant"' in page


def test_full_report_renders_preference_and_priced_costs(reports, rendered):
    report = reports["full"]
    md, page = rendered["full"]
    preference = report["preference"]
    leader, row = next(iter(preference["bradley_terry"]["variants"].items()))
    rating = f"| {row['rank']} | {leader} | {row['rating']:.0f} [{row['low']:.0f}, {row['high']:.0f}] |"
    assert rating in md
    share = preference["win_rates"]["rate"]["rag"]["base"]
    battles = preference["win_rates"]["battles"]["rag"]["base"]
    assert f"{100 * share:.1f}% ({battles})" in md
    effect = preference["length_controlled"]["length_effect"]
    assert f"odds ratio {effect['odds_ratio']:.2f} [{effect['low']:.2f}, {effect['high']:.2f}]" in md
    outcomes = preference["outcomes"]
    assert f"80 votes: {outcomes['best']} named a best answer, {outcomes['tie']} a tie" in md
    assert "which beats every other column of that turn" in md and "a tie is a draw between every pair" in md
    assert '"all bad" is a draw between every pair' in md
    needed = preference["votes_needed"]
    if needed["more"] == 0:
        assert f"the {needed['battles']} battles between" in md and "are enough" in md
    else:
        assert f"({needed['battles']} so far)" in md or "are even" in md
    kappa = report["hallucination"]["trust"]["kappa_vs_raters"]
    assert f"Cohen's kappa {kappa['value']:.3f} over {kappa['n']} answers" in md
    assert "rouge_l against stars: Spearman - over 4 answers: all judge scores are equal" in md
    assert "CPU hour 0.50 USD" in md and "| ft | default | qa | 60 | 607 s (10.1 min) | cpu: Test CPU (16 cores" in md
    assert f"{report['cost']['answers']['ft']['per_1000_answers']:,.2f} USD" in md
    assert "| type | numeric | 15 of 42 | ft_rag |" in md
    assert "| 33 | spike | train loss 9.1 \\| spiked lower the \\<b>learning rate\\</b> |" in md
    assert 'class="status status-qualified"' in page and "qualified recommendation: rag" in page
    assert "lower the &lt;b&gt;learning rate&lt;/b&gt;" in page
    assert "cost (USD)" in plots.cost_volume_plot(report)
    assert "machine time" in plots.cost_volume_plot(reports["demo"])


def test_the_empty_report_says_what_is_missing(rendered):
    md, page = rendered["empty"]
    for text in (
        "no eval yet: run `workbench eval --name empty`",
        "Status: **no eval**",
        "No eval yet: run `workbench eval --name empty` for quality figures.",
        "No arena votes yet",
        "No answer has been checked for unsupported claims yet.",
        "No adapter trained.",
        "No index built.",
        "No break-even",
    ):
        assert text in md, text
    assert "|" not in md  # no table without data
    assert "status status-no_eval" in page
    assert "run <code>workbench eval --name empty</code>" in page and "`" not in page  # code, as Markdown shows it


def test_data_text_is_escaped_in_html_and_cannot_break_markdown_tables(reports):
    report = rename(reports["full"], "base", EVIL)
    report["decision"]["reasons"].append(f"{EVIL} is last\n# not a heading")
    report["breakdowns"]["type"]["groups"]["a|b\nc"] = report["breakdowns"]["type"]["groups"]["fact"]
    report["run"] = "demo <i>run</i>"
    page = render_html(report)
    assert "<script" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert page.count("&lt;script&gt;alert(1)") > 10  # tables, plots' tick labels, the reason
    md = render_markdown(report)
    assert not re.search(r"(?<!\\)<script", md)
    assert "\\<script>alert(1)\\</script>\\|x is last # not a heading" in md
    assert "| \\<script>alert(1)\\</script>\\|x | 59.5% [44.5%, 73.0%] |" in md
    tables = table_rows(md)
    assert len(tables) > 10
    for table in tables:
        assert len({cell_separators(line) for line in table}) == 1, table
    assert "| a\\|b c | 14 |" in md


@pytest.mark.parametrize("name", ["demo", "full", "empty"])
def test_html_references_nothing_outside_the_file(reports, name):
    page = render_html(rename(reports[name], "base", EVIL))
    for needle in ("http://", "https://", 'src="', 'href="http', "<link", "<script", "@import", "url(http"):
        assert needle not in page, needle
    assert "<style>" in page and "max-width: 1000px" in page


def test_plot_count_and_no_plot_without_data(reports, rendered):
    # quality, comparisons, ratings, win rates, latency, cost-volume, and one training plot per adapter
    assert rendered["full"][1].count("<svg") == 8
    assert rendered["demo"][1].count("<svg") == 5
    assert rendered["empty"][1].count("<svg") == 0
    assert "<svg" not in rendered["full"][0]
    empty = reports["empty"]
    for plot in (
        plots.quality_plot,
        plots.comparisons_plot,
        plots.win_rate_plot,
        plots.bradley_terry_plot,
        plots.latency_plot,
        plots.cost_volume_plot,
    ):
        assert plot(empty) is None, plot.__name__
        assert plot(reports["full"]).startswith("<svg "), plot.__name__
    assert plots.training_plot(empty, "ft") is None
    assert plots.win_rate_plot(reports["demo"]) is None and plots.bradley_terry_plot(reports["demo"]) is None


def test_plots_are_labelled_small_and_have_unique_ids(reports, rendered):
    full = reports["full"]
    svg = plots.training_plot(full, "raft")
    assert "Training of raft (stopped early)" in svg and ">spike<" in svg and ">overfit<" in svg
    assert 'width="432pt" height="216pt"' in svg  # 6 x 3 inches
    assert "seconds per answer" in plots.latency_plot(full)
    assert "rating (Elo scale, 1000 = average)" in plots.bradley_terry_plot(full)
    assert len(plots.quality_plot(full)) < 40_000
    page = rendered["full"][1]
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert all(ref in ids for ref in re.findall(r'href="#([^"]+)"', page))


def test_dollar_signs_in_names_are_drawn_literally(reports):
    report = rename(reports["full"], "ft", "cheap$ft")
    assert ">cheap$ft<" in plots.latency_plot(report)


def test_rendering_is_deterministic(reports, rendered):
    for name, report in reports.items():
        assert (render_markdown(copy.deepcopy(report)), render_html(copy.deepcopy(report))) == rendered[name]
