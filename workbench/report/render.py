"""The report dict (`build_report`) as Markdown (for a pull request or a terminal) and as one self-contained HTML
file (opens offline: inline style and inline SVG plots, no external resource).

Both views render the same list of blocks (`report_blocks`: headings, paragraphs, bullet lists, tables with their
plot), so they carry the same content in the same order: the decision first, then quality, human preference,
hallucination, breakdowns, RAG error attribution, cost, training and notes. Formatting happens here only: scores
with 3 decimals, rates as percentages, "-" for a missing figure.

Every text that comes from data (run, variant, group and judge names, messages, notes, the decision's sentences)
is escaped for the view it lands in: `html.escape` in HTML; in Markdown newlines become spaces and `\\`, `|` and
`<` are backslash-escaped, so a name can neither break a table row nor open an HTML tag.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from workbench.report import plots
from workbench.report.formats import number, plural

SECTIONS = (
    "Decision",
    "Quality",
    "Human preference",
    "Hallucination",
    "Breakdowns",
    "RAG error attribution",
    "Cost",
    "Training",
    "Notes",
)
"""The section headings, in order; a "Drift" section follows Quality when a second eval was compared, and a
"Freshness" section follows Cost when the run has a freshness probe, and a "Rater agreement" section follows Human
preference when raters rated queued questions."""

STATUS_TEXT = {
    "recommend": "recommend",
    "qualified": "qualified recommendation",
    "not_significant": "not significant",
    "only_one": "only one option",
    "no_eval": "no eval",
}

BATTLES_TEXT = (
    "How votes became battles: a vote names the best column of a turn, which beats every other column of that turn "
    "(the other columns are not compared with one another); a tie is a draw between every pair of columns, and "
    '"all bad" is a draw between every pair too (no column beat another); a draw counts half a win each way. '
    "Ratings are on the Elo scale (1000 is the average; 400 points are 10:1 odds) with intervals from resampling "
    "votes, and a rank only separates variants whose intervals do not overlap."
)


# -- blocks -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    strong: bool = False


@dataclass(frozen=True)
class Badge:
    status: str
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    plot: Callable[[], str | None] | None = field(default=None, repr=False)
    """Draws the inline SVG shown beside the table in HTML (only the HTML view calls it: Markdown has no plots)."""


Block = Heading | Paragraph | Badge | Bullets | Table


def report_blocks(report: dict) -> list[Block]:
    """The report as a list of view-independent blocks, in reading order."""
    blocks: list[Block] = [Heading(1, _title(report))]
    blocks += _eval_line(report)
    for name, section in zip(
        SECTIONS,
        (_decision, _quality, _preference, _hallucination, _breakdowns, _attribution, _cost, _training, _notes),
    ):
        blocks += [Heading(2, name), *section(report)]
        if name == "Quality" and report.get("drift"):
            blocks += [Heading(2, "Drift"), *_drift(report)]
        if name == "Human preference" and report.get("raters"):
            blocks += [Heading(2, "Rater agreement"), *_raters(report)]
        if name == "Cost" and report.get("freshness"):
            blocks += [Heading(2, "Freshness"), *_freshness(report)]
    return blocks


# -- Markdown ---------------------------------------------------------------------------------------------------------


def render_markdown(report: dict) -> str:
    """The report as a Markdown document (GitHub-flavoured tables), the decision first."""
    out: list[str] = []
    for block in report_blocks(report):
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(f"**{_md(block.text)}**" if block.strong else _md_block(block.text))
        elif isinstance(block, Badge):
            out.append(f"Status: **{_md(block.text)}**")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {_md_block(item)}" for item in block.items))
        elif isinstance(block, Table):
            lines = [_md_row(block.header), "| " + " | ".join("---" for _ in block.header) + " |"]
            lines += [_md_row(row) for row in block.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _md(text) -> str:
    """Text from data, made inert in a Markdown line or table cell: one line; `\\`, `|` and `<` escaped."""
    text = re.sub(r"[\r\n]+", " ", str(text))
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")


def _md_block(text) -> str:
    """`_md` for a paragraph, heading or list item: a leading block marker (`#`, `>`, `-`, ...) escaped too."""
    text = _md(text)
    return "\\" + text if text[:1] in ("#", ">", "-", "+", "*", "=") else text


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


# -- HTML -------------------------------------------------------------------------------------------------------------

STYLE = """
.wb-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 15px;
  line-height: 1.45; color: #1f2328; max-width: 1000px; margin: 0 auto; padding: 16px; }
.wb-report h1 { font-size: 1.6em; margin: 0 0 0.3em; }
.wb-report h2 { font-size: 1.3em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid #d0d7de; }
.wb-report h3 { font-size: 1.08em; margin: 1.2em 0 0.4em; }
.wb-report p { margin: 0.5em 0; }
.wb-report .headline { font-weight: 600; font-size: 1.08em; }
.wb-report .status { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
  font-weight: 600; font-size: 0.9em; background: #6e7781; }
.wb-report .status-recommend { background: #1a7f37; }
.wb-report .status-qualified { background: #bf8700; }
.wb-report .row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin: 0.6em 0; }
.wb-report .table { flex: 0 1 auto; max-width: 100%; overflow-x: auto; }
.wb-report figure { flex: 1 1 440px; max-width: 640px; margin: 0; }
.wb-report svg.plot { width: 100%; height: auto; }
.wb-report table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; }
.wb-report th, .wb-report td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
.wb-report th { background: #f6f8fa; }
.wb-report tr:nth-child(even) td { background: #fbfcfd; }
"""


def render_html_body(report: dict) -> str:
    """The report's HTML without `<html>`/`<head>`: its style (scoped to `.wb-report`) and content, for embedding
    (the web app's `gr.HTML`)."""
    out = [f'<div class="wb-report">\n<style>{STYLE}</style>']
    for block in report_blocks(report):
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_h(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f'<p class="headline">{_h(block.text)}</p>' if block.strong else f"<p>{_h(block.text)}</p>")
        elif isinstance(block, Badge):
            kind = re.sub(r"[^a-z_]", "", block.status)
            out.append(f'<p>Status: <span class="status status-{kind}">{_h(block.text)}</span></p>')
        elif isinstance(block, Bullets):
            out.append("<ul>\n" + "\n".join(f"<li>{_h(item)}</li>" for item in block.items) + "\n</ul>")
        elif isinstance(block, Table):
            out.append(_html_table(block))
    out.append("</div>")
    return "\n".join(out) + "\n"


def render_html(report: dict) -> str:
    """The report as one self-contained HTML file (no external CSS, script, font or image)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(_title(report))}</title>\n</head>\n<body>\n{render_html_body(report)}</body>\n</html>\n"
    )


def _h(text) -> str:
    """Text escaped for HTML, a `command` or `field` in backticks shown as code (as the Markdown shows it)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=True))


def _html_table(table: Table) -> str:
    head = "<tr>" + "".join(f"<th>{_h(c)}</th>" for c in table.header) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    element = f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    svg = table.plot() if table.plot is not None else None
    if svg is None:
        return element
    return f'<div class="row">\n<div class="table">\n{element}\n</div>\n<figure>\n{svg}</figure>\n</div>'


# -- sections ---------------------------------------------------------------------------------------------------------


def _title(report: dict) -> str:
    ev = report.get("eval")
    return f"workbench report: {report.get('run')}" + (f", eval {ev['id']}" if ev else " (no eval yet)")


def _eval_line(report: dict) -> list[Block]:
    ev = report.get("eval")
    if not ev:
        return []
    return [
        Paragraph(
            f"Eval {ev['id']} on the {ev.get('split')} split: {ev.get('questions')} questions, {ev.get('answers')} "
            f"answers ({ev.get('errors')} failed) from {', '.join(ev.get('variants') or [])}; model "
            f"{ev.get('model_id') or '-'}, index {ev.get('index_id') or '-'}; finished {ev.get('finished_at') or '-'}."
        )
    ]


def _decision(report: dict) -> list[Block]:
    d = report.get("decision") or {}
    status = d.get("status") or "no_eval"
    label = STATUS_TEXT.get(status, status)
    if d.get("recommendation"):
        label += f": {d['recommendation']}"
    blocks: list[Block] = [Paragraph(d.get("headline") or "-", strong=True), Badge(status, label)]
    if d.get("reasons"):
        blocks.append(Bullets(list(d["reasons"])))
    against = d.get("against") or {}
    if against:
        blocks.append(
            Paragraph(
                f"The leader's {len(against)} comparisons are corrected together: p-values by Holm's method, "
                f"intervals by Bonferroni's, at {report.get('settings', {}).get('confidence', 0.95):.0%} overall."
            )
        )
    if d.get("drivers"):
        blocks.append(Paragraph("Groups of questions that decide the lead (without them the runner-up leads):"))
        blocks.append(
            Table(
                ["grouping", "group", "questions", "leader without them", "means without them"],
                [
                    [
                        r["grouping"],
                        r["group"],
                        f"{r['questions']} of {r['of']}",
                        r["leader_without"] or "(a tie)",
                        ", ".join(f"{v} {number(m)}" for v, m in r["without"].items()),
                    ]
                    for r in d["drivers"]
                ],
            )
        )
    more = d.get("more_questions")
    if more:
        if more.get("why") == "too_few":
            text = (
                f"More eval questions: too few so far to estimate how many would separate {d['leader']} from "
                f"{more['against']}; evaluate more questions."
            )
        elif more.get("needed") is None:
            text = (
                f"More eval questions: {d['leader']} and {more['against']} show no difference, so more questions "
                "are unlikely to separate them."
            )
        else:
            text = (
                f"More eval questions: about {more['more']} more ({more['needed']} in all) would separate "
                f"{d['leader']} from {more['against']} on {d.get('metric')}, if the difference stays as observed."
            )
        blocks.append(Paragraph(text))
    blocks.append(Paragraph(_votes_needed_text(report.get("preference") or {})))
    return blocks


def _votes_needed_text(preference: dict) -> str:
    needed = preference.get("votes_needed")
    if not preference.get("votes"):
        return "Votes needed: no arena votes yet, so the human preference is unknown."
    if not needed:
        return "Votes needed: only one variant was rated in the arena, so there is nothing to separate."
    first, second = needed["between"]
    if needed.get("why") == "too_few":
        return (
            f"Votes needed: {plural(needed['battles'], 'battle')} between {first} and {second} so far, too few to "
            f"estimate how many would separate them."
        )
    if needed.get("needed") is None:
        return (
            f"Votes needed: {first} and {second} are even over {plural(needed['battles'], 'battle')}; more votes are "
            f"unlikely to separate them."
        )
    if needed.get("more") == 0:
        return (
            f"Votes needed: the {needed['battles']} battles between {first} and {second} so far are enough to "
            f"separate them, if the preference stays as observed."
        )
    return (
        f"Votes needed: about {needed['more']} more battles between {first} and {second} ({needed['needed']} in "
        f"all) would separate them if the preference stays as observed ({needed['battles']} so far)."
    )


def _quality(report: dict) -> list[Block]:
    q = report.get("quality")
    if not q:
        return [Paragraph(f"No eval yet: run `workbench eval --name {report.get('run')}` for quality figures.")]
    metric, judges, variants = q["metric"], q.get("judges") or [], q.get("variants") or {}
    blocks: list[Block] = [
        Paragraph(
            f"Mean score per variant and judge over {q.get('questions')} questions ({q.get('unanswerable', 0)} "
            f"unanswerable), with bootstrap intervals [low, high]; the decision rests on {metric}."
        ),
        Table(
            ["variant", *judges, "n"],
            [
                [v, *(_interval(row.get(j)) for j in judges), _count((row.get(metric) or {}).get("n"))]
                for v, row in variants.items()
            ],
            partial(plots.quality_plot, report),
        ),
        Paragraph(
            f"Knowledge is {q.get('knowledge_judge')} on answerable questions; abstention is {metric} on unanswerable "
            "questions (1 when the answer declines, 0 when it asserts something)."
        ),
        Table(
            ["variant", "knowledge", "n", "abstention", "n"],
            [
                [
                    v,
                    _interval(row.get("knowledge")),
                    _count((row.get("knowledge") or {}).get("n")),
                    _interval(row.get("abstention")),
                    _count((row.get("abstention") or {}).get("n")),
                ]
                for v, row in variants.items()
            ],
        ),
    ]
    comparisons = q.get("comparisons") or []
    if comparisons:
        blocks.append(
            Paragraph(
                f"Paired comparisons on {metric} (a - b over the questions both answered). These {len(comparisons)} "
                "comparisons are one family: p-values are Holm-corrected and intervals widened (Bonferroni) for "
                "its size, so an interval that excludes 0 goes with a significant difference. The decision's "
                "comparisons of the leader with each other option are a family of their own, so the same pair "
                "can show another corrected p there."
            )
        )
        rows = []
        for c in comparisons:
            d = (c.get("judges") or {}).get(metric) or {}
            rows.append(
                [
                    f"{c['a']} - {c['b']}",
                    c.get("why") or "",
                    _interval(d, signed=True),
                    number(d.get("p_adjusted")),
                    _yes(d.get("significant")),
                    _count(d.get("n")),
                ]
            )
        blocks.append(
            Table(
                ["a - b", "why", "difference [low, high]", "corrected p", "significant", "n"],
                rows,
                partial(plots.comparisons_plot, report),
            )
        )
    return blocks


def _drift(report: dict) -> list[Block]:
    d = report["drift"]
    how = (
        f"paired over the {d['shared_questions']} questions both asked"
        if d["paired"]
        else f"unpaired: {d['questions']['before']} and {d['questions']['after']} questions, {d['shared_questions']} "
        "of them shared"
    )
    declines = ", ".join(f"{x['variant']} on {x['judge']}" for x in d["declines"])
    blocks: list[Block] = [
        Paragraph(
            f"From eval {d['before']} to eval {d['after']} ({how}): each judge's mean before and after and the change "
            "[low, high], p-values Holm-corrected over the variants of a judge."
        ),
        Paragraph(f"Significant declines: {declines}." if declines else "No significant decline.", strong=True),
    ]
    for judge, rows in d["judges"].items():
        blocks.append(
            Table(
                ["variant", f"{judge} before", "after", "change [low, high]", "corrected p", "decline", "n"],
                [
                    [
                        v,
                        _interval(row["before"]),
                        _interval(row["after"]),
                        _interval(row["change"], signed=True),
                        number(row["change"].get("p_adjusted")),
                        _yes(row["change"].get("decline")),
                        _count(row["change"].get("n")),
                    ]
                    for v, row in rows.items()
                ],
            )
        )
    return blocks


def _freshness(report: dict) -> list[Block]:
    f = report["freshness"]
    retrain = f"{_duration(f['retrain_s'])} to retrain the adapter" if f.get("retrain_s") else "no training on record"
    return [
        Paragraph(
            f"`workbench probe-freshness` ({(f.get('created_at') or '')[:10]}) changed {f['facts']} facts in a copy of "
            f"the corpus and updated its index in {_duration(f['index_update_s'])} ({retrain}); then each variant "
            "answered the questions about those facts. Share of answers giving the new value, the old one, both or "
            "neither: a variant that reads the index can follow the change at once; an adapter alone keeps the old "
            "value until it is retrained."
        ),
        Table(
            ["variant", "new value", "old value", "both", "neither"],
            [
                [v, _pct(row["new"]), _pct(row["old"]), _pct(row["both"]), _pct(row["neither"])]
                for v, row in f["variants"].items()
            ],
        ),
    ]


def _raters(report: dict) -> list[Block]:
    r = report["raters"]
    alike = r["vote_agreement"]
    blocks: list[Block] = [
        Paragraph(
            f"{plural(r['raters'], 'rater')} voted on {plural(r['questions'], 'queued question')} (each served blind "
            f"to several raters, who saw the same answers). Krippendorff's alpha on stars: {_alpha(r['stars_alpha'])}; "
            f"on votes: {_alpha(r['votes_alpha'])}; raters voted alike in {_pct(alike['share'])} of "
            f"{plural(alike['pairs'], 'pair')}. Alpha is 1 for perfect agreement and 0 for chance; 0.8 is the usual "
            "floor for firm conclusions from ratings, 0.667 for tentative ones. Each rater's alpha is with the other "
            "raters on what both rated; Spearman compares their stars with each judge's scores."
        )
    ]
    judges = sorted({j for entry in r["per_rater"].values() for j in entry["judges"]})
    rows = []
    for rater, entry in r["per_rater"].items():
        correlations = [number(entry["judges"].get(j, {}).get("value")) for j in judges]
        flag = "dropped" if rater in r["dropped"] else "flagged" if rater in r["flagged"] else ""
        rows.append(
            [
                rater,
                _count(entry["questions"]),
                _alpha(entry["stars_alpha"]),
                _alpha(entry["votes_alpha"]),
                _pct(entry["vote_agreement"]["share"]),
                *correlations,
                flag,
            ]
        )
    header = ["rater", "questions", "alpha, stars", "alpha, votes", "votes alike", *[f"Spearman, {j}" for j in judges]]
    blocks.append(Table([*header, "far below the rest"], rows))
    if r["flagged"]:
        action = (
            "their ratings are left out of every human figure (report.drop_flagged_raters)"
            if r["dropped"]
            else "`report.drop_flagged_raters: true` leaves them out of every human figure"
        )
        blocks.append(Bullets([f"{rater}: {why}" for rater, why in r["flagged"].items()] + [action]))
    return blocks


def _alpha(entry: dict) -> str:
    """An alpha with the units behind it, or why it is undefined."""
    if entry["value"] is None:
        return f"- ({entry['reason']})" if entry["n"] else "-"
    return f"{entry['value']:.3f} (n={entry['n']})"


def _preference(report: dict) -> list[Block]:
    p = report.get("preference") or {}
    blocks: list[Block] = []
    votes = p.get("votes") or 0
    if not votes:
        blocks.append(Paragraph("No arena votes yet: the human preference is unknown."))
    else:
        outcomes = p.get("outcomes") or {}
        blocks.append(
            Paragraph(
                f"{plural(votes, 'vote')}: {outcomes.get('best', 0)} named a best answer, {outcomes.get('tie', 0)} a tie, "
                f"{outcomes.get('all_bad', 0)} all bad."
            )
        )
        blocks.append(Paragraph(BATTLES_TEXT))
        bt = (p.get("bradley_terry") or {}).get("variants") or {}
        too_few = (p.get("bradley_terry") or {}).get("too_few")
        if too_few:
            blocks.append(Paragraph(f"No ratings yet: {too_few}; the win rates below are all the votes can say."))
        if bt:
            blocks.append(Heading(3, "Bradley-Terry ratings"))
            blocks.append(
                Table(
                    ["rank", "variant", "rating [low, high]"],
                    _rating_rows(bt),
                    partial(plots.bradley_terry_plot, report),
                )
            )
        lc = p.get("length_controlled") or {}
        if lc.get("variants"):
            blocks.append(Heading(3, "Length-controlled ratings"))
            blocks.append(
                Paragraph(
                    "The same fit with the answers' relative length difference as a covariate: "
                    "who wins at equal length."
                )
            )
            blocks.append(Table(["rank", "variant", "rating [low, high]"], _rating_rows(lc["variants"])))
            effect = lc.get("length_effect")
            blocks.append(
                Paragraph(
                    "Length effect: "
                    + (
                        f"odds ratio {effect['odds_ratio']:.2f} [{effect['low']:.2f}, {effect['high']:.2f}] of winning "
                        "for an answer one standard deviation longer (1 = length does not matter)."
                        if effect
                        else "- (the answers' lengths did not vary)."
                    )
                )
            )
        win = p.get("win_rates") or {}
        if win.get("rate"):
            names = list(win["rate"])
            battles = win.get("battles") or {}
            blocks.append(Heading(3, "Win rates"))
            blocks.append(
                Paragraph("Share of the row variant's battles against the column variant it won (battles in brackets).")
            )
            blocks.append(
                Table(
                    ["variant", *names],
                    [
                        [
                            i,
                            *(
                                "-" if i == j else f"{_pct(win['rate'][i].get(j))} ({(battles.get(i) or {}).get(j, 0)})"
                                for j in names
                            ),
                        ]
                        for i in names
                    ],
                    partial(plots.win_rate_plot, report),
                )
            )
    stars, false = p.get("stars") or {}, p.get("states_false") or {}
    if stars or false:
        blocks.append(Heading(3, "Ratings of single answers"))
        blocks.append(
            Table(
                ["variant", "stars [low, high]", "n", "states something false [low, high]", "flagged / checked"],
                [
                    [
                        v,
                        _interval(stars.get(v)),
                        _count((stars.get(v) or {}).get("n")),
                        _rate(false.get(v)),
                        _fraction(false.get(v)),
                    ]
                    for v in sorted(set(stars) | set(false))
                ],
            )
        )
    if votes:
        blocks.append(Paragraph(_votes_needed_text(p)))
    return blocks


def _rating_rows(ratings: dict) -> list[list[str]]:
    return [
        [
            str(r.get("rank", "-")),
            v,
            f"{number(r.get('rating'), 0)} [{number(r.get('low'), 0)}, {number(r.get('high'), 0)}]",
        ]
        for v, r in ratings.items()
    ]


def _hallucination(report: dict) -> list[Block]:
    h = report.get("hallucination") or {}
    ev, arena = h.get("eval") or {}, h.get("arena") or {}
    blocks: list[Block] = []
    if not ev and not arena:
        blocks.append(Paragraph("No answer has been checked for unsupported claims yet."))
    else:
        blocks.append(
            Paragraph(
                f"Share of answers with at least one claim the detector ({', '.join(h.get('detectors') or []) or '-'}) "
                "found unsupported, with Wilson intervals:"
            )
        )
        blocks.append(
            Table(
                ["variant", "eval [low, high]", "flagged / answers", "arena [low, high]", "flagged / answers"],
                [
                    [v, _rate(ev.get(v)), _fraction(ev.get(v)), _rate(arena.get(v)), _fraction(arena.get(v))]
                    for v in _ordered(report, set(ev) | set(arena))
                ],
            )
        )
    trust = h.get("trust") or {}
    items = []
    kappa = trust.get("kappa_vs_raters")
    if kappa:
        counts = (kappa.get("details") or {}).get("counts") or {}
        observed = (kappa.get("details") or {}).get("observed")
        text = f"Detector against raters' flags: Cohen's kappa {number(kappa.get('value'))} over {kappa.get('n', 0)} answers"
        if counts:
            text += (
                f" (both flagged {counts.get('true_true', 0)}, detector only {counts.get('true_false', 0)}, "
                f"raters only {counts.get('false_true', 0)}, neither {counts.get('false_false', 0)}; "
                f"observed agreement {_pct(observed)})"
            )
        if kappa.get("reason"):
            text += f": {kappa['reason']}"
        items.append(text)
    else:
        items.append("Detector against raters' flags: no arena answer has both flags yet.")
    for judge, row in (trust.get("judges_vs_stars") or {}).items():
        text = f"{judge} against stars: Spearman {number(row.get('value'))} over {row.get('n', 0)} answers"
        p = (row.get("details") or {}).get("p")
        if p is not None:
            text += f" (p = {number(p)})"
        if row.get("reason"):
            text += f": {row['reason']}"
        items.append(text)
    wrong = trust.get("flags_vs_wrong_answers")
    if wrong:
        items.append(
            f"Flags against wrong answers on the eval ({wrong.get('metric')} below {wrong.get('wrong_below')}: "
            f"{wrong.get('wrong')} of {wrong.get('answers')} answers to answerable questions): AUROC "
            f"{number(wrong.get('auroc'))} against {number(wrong.get('length_auroc'))} for answer length alone "
            "(0.5 is chance)."
        )
    blocks.append(Paragraph("How far to trust the detector:"))
    blocks.append(Bullets(items))
    return blocks


def _breakdowns(report: dict) -> list[Block]:
    breakdowns = report.get("breakdowns") or {}
    if not breakdowns:
        return [Paragraph("No eval yet: breakdowns by question need one.")]
    metric = (report.get("quality") or {}).get("metric") or (report.get("decision") or {}).get("metric") or "metric"
    blocks: list[Block] = [Paragraph(f"Mean {metric} [low, high] per group of questions, with the group's leader.")]
    for grouping, section in breakdowns.items():
        groups = section.get("groups") or {}
        variants = _ordered(report, {v for g in groups.values() for v in g.get("variants") or {}})
        blocks.append(Heading(3, f"By {grouping}"))
        blocks.append(
            Table(
                ["group", "questions", *variants, "leader"],
                [
                    [
                        name,
                        _count(g.get("questions")),
                        *(_interval((g.get("variants") or {}).get(v)) for v in variants),
                        g.get("leader") or "-",
                    ]
                    for name, g in groups.items()
                ],
            )
        )
        gaps = section.get("largest_gap") or {}
        if gaps:
            blocks.append(
                Paragraph(f"Largest gap per variant between two groups of at least 2 questions ({grouping}):")
            )
            blocks.append(
                Table(
                    ["variant", "gap", "strongest group", "weakest group"],
                    [[v, number(g.get("gap")), g.get("high") or "-", g.get("low") or "-"] for v, g in gaps.items()],
                )
            )
    return blocks


def _attribution(report: dict) -> list[Block]:
    a = report.get("attribution")
    if not a:
        return [Paragraph("No eval yet: attribution of RAG's wrong answers needs one.")]
    if not a.get("variants"):
        return [Paragraph("No variant in the eval showed sources for questions with gold documents.")]
    return [
        Paragraph(
            f"Wrong answers (token F1 below {a.get('wrong_below')}) to questions with gold documents: the generator "
            "failed when a gold source was among those shown, retrieval missed when none was."
        ),
        Table(
            [
                "variant",
                "answers",
                "gold source shown",
                "wrong",
                "generator failed",
                "retrieval missed",
                "missed share",
            ],
            [
                [
                    v,
                    _count(r.get("answers")),
                    _pct(r.get("gold_shown")),
                    _count(r.get("wrong")),
                    _count(r.get("generator_failed")),
                    _count(r.get("retrieval_missed")),
                    _pct(r.get("retrieval_missed_share")),
                ]
                for v, r in a["variants"].items()
            ],
        ),
    ]


def _cost(report: dict) -> list[Block]:
    c = report.get("cost") or {}
    currency = c.get("currency") or ""
    prices = c.get("prices") or {}
    blocks: list[Block] = [
        Paragraph(
            f"Prices: CPU hour {_money(prices.get('cpu_hour'), currency)}, GPU hour "
            f"{_money(prices.get('gpu_hour'), currency)}"
            + ("" if any(v is not None for v in prices.values()) else " (none set: costs are in machine time only)")
            + (f"; the eval ran on {_machine(c['eval_machine'])}" if c.get("eval_machine") else "")
            + "."
        )
    ]
    training = c.get("training") or {}
    blocks.append(Heading(3, "One-off costs"))
    if training:
        blocks.append(
            Table(
                [
                    "variant",
                    "adapter",
                    "recipe",
                    "steps",
                    "wall time (load, training, probe)",
                    "machine",
                    "trainable parameters",
                    "adapter size",
                    "cost",
                ],
                [
                    [
                        v,
                        t.get("adapter") or "-",
                        t.get("recipe") or "-",
                        _count(t.get("steps")),
                        _duration(t.get("wall_seconds")),
                        _machine(t.get("machine")),
                        _params(t.get("trainable_params"), t.get("total_params")),
                        _bytes(t.get("adapter_bytes")),
                        _money(t.get("cost"), currency),
                    ]
                    for v, t in training.items()
                ],
            )
        )
    else:
        blocks.append(Paragraph("No adapter trained."))
    index = c.get("index")
    if index:
        blocks.append(
            Paragraph(
                f"Index: built in {_duration(index.get('seconds'))} from {_count(index.get('documents'))} documents "
                f"({_count(index.get('chunks'))} chunks, {_bytes(index.get('bytes'))}), cost "
                f"{_money(index.get('cost'), currency)}."
            )
        )
    else:
        blocks.append(Paragraph("No index built."))
    answers = c.get("answers") or {}
    blocks.append(Heading(3, "Per answer"))
    if answers:
        blocks.append(
            Paragraph(
                "Timed in the eval, where several questions' rows share each decoding step: latency is what a user "
                "waits under that load. Machine time per answer is the eval's answering wall time shared out among "
                "the local answers in proportion to their latencies; prices apply to it."
            )
        )
        blocks.append(
            Table(
                [
                    "variant",
                    "latency p50",
                    "latency p95",
                    "first token p50",
                    "tokens in",
                    "tokens out",
                    "machine s / answer",
                    "per 1,000 answers",
                ],
                [
                    [
                        v,
                        _seconds((r.get("latency_s") or {}).get("p50")),
                        _seconds((r.get("latency_s") or {}).get("p95")),
                        _seconds((r.get("first_token_s") or {}).get("p50")),
                        number(r.get("tokens_in"), 0),
                        number(r.get("tokens_out"), 0),
                        _seconds(r.get("machine_seconds")),
                        _money(r.get("per_1000_answers"), currency),
                    ]
                    for v, r in answers.items()
                ],
                partial(plots.latency_plot, report),
            )
        )
    else:
        blocks.append(Paragraph("No eval answers to time yet."))
    blocks.append(Heading(3, "Break-even"))
    break_even = c.get("break_even") or []
    if break_even:
        blocks.append(
            Paragraph(
                "Answers after which fine-tuning's one-off cost (training, less building the index) is repaid by its "
                "cheaper answers (no sources in its prompts, and whatever length its answers have), in machine time:"
            )
        )
        blocks.append(
            Table(
                ["variant", "against", "one-off difference", "saving per answer", "break-even answers", "priced"],
                [
                    [
                        b["variant"],
                        b["against"],
                        _duration(b.get("one_off_seconds")),
                        _seconds(b.get("saving_seconds_per_answer")),
                        "never (its answers are not cheaper)"
                        if b.get("answers") is None
                        else f"{math.ceil(b['answers']):,}",
                        "-" if b.get("answers_priced") is None else f"{math.ceil(b['answers_priced']):,}",
                    ]
                    for b in break_even
                ],
                partial(plots.cost_volume_plot, report),
            )
        )
    else:
        blocks.append(Paragraph("No break-even: it needs both ft and rag in the eval and ft's training manifest."))
    return blocks


def _training(report: dict) -> list[Block]:
    training = report.get("training") or {}
    if not training:
        return [Paragraph("No adapter trained.")]
    blocks: list[Block] = []
    for adapter, t in training.items():
        forgetting = t.get("forgetting") or {}
        blocks.append(Heading(3, f"adapter {adapter}"))
        rows = [
            ["answers as", ", ".join(t.get("variants") or []) or "-"],
            ["outcome", t.get("outcome") or "-"],
            ["recipe", t.get("recipe") or "-"],
            ["steps", _count(t.get("steps"))],
            ["best step", f"{_count(t.get('best_step'))} (val loss {number(t.get('best_val_loss'))})"],
            [
                "forgetting (general-text perplexity)",
                f"{number(forgetting.get('base_perplexity'), 2)} before, "
                f"{number(forgetting.get('finetuned_perplexity'), 2)} after ({_signed_pct(forgetting.get('change_pct'))})"
                if forgetting
                else "not measured",
            ],
        ]
        blocks.append(Table(["figure", "value"], rows, partial(plots.training_plot, report, adapter)))
        events = t.get("events") or []
        if events:
            blocks.append(
                Table(
                    ["step", "event", "message"],
                    [[_count(e.get("step")), e.get("kind") or "-", e.get("message") or ""] for e in events],
                )
            )
        else:
            blocks.append(Paragraph("No training events (spikes, overfitting, early stop)."))
    return blocks


def _notes(report: dict) -> list[Block]:
    notes = report.get("notes") or []
    return [Bullets([str(n) for n in notes])] if notes else [Paragraph("None.")]


# -- formatting -------------------------------------------------------------------------------------------------------


def _count(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _interval(row: dict | None, key: str = "mean", signed: bool = False) -> str:
    """`mean [low, high]` with 3 decimals; just the mean without an interval; "-" without a mean."""
    if not row or row.get(key) is None:
        return "-"
    value = f"{row[key]:+.3f}" if signed else f"{row[key]:.3f}"
    if row.get("low") is None or row.get("high") is None:
        return value
    return f"{value} [{row['low']:.3f}, {row['high']:.3f}]"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _signed_pct(x) -> str:
    """A change already in percent."""
    return "-" if x is None else f"{x:+.1f}%"


def _rate(row: dict | None) -> str:
    if not row or row.get("rate") is None:
        return "-"
    return f"{_pct(row['rate'])} [{_pct(row.get('low'))}, {_pct(row.get('high'))}]"


def _fraction(row: dict | None) -> str:
    return "-" if not row or not row.get("n") else f"{row.get('count', 0)} / {row['n']}"


def _yes(flag) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def _seconds(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _duration(x) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} s" if abs(x) < 120 else f"{x:.0f} s ({x / 60:.1f} min)"


def _money(x, currency: str) -> str:
    if x is None:
        return "-"
    return f"{x:,.2f} {currency}" if abs(x) >= 0.1 or x == 0 else f"{x:.2g} {currency}"


def _bytes(x) -> str:
    if x is None:
        return "-"
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if x >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x} B"


def _params(trainable, total) -> str:
    if trainable is None:
        return "-"
    return f"{trainable:,}" + (f" of {total:,} ({trainable / total:.2%})" if total else "")


def _machine(m: dict | None) -> str:
    if not m:
        return "-"
    text = f"{m.get('kind', '?')}: {m.get('name') or '?'}"
    details = [f"{m['cores']} cores"] if m.get("cores") else []
    if m.get("peak_memory_mb") is not None:
        details.append(f"peak {m['peak_memory_mb']:,.0f} MB")
    return text + (f" ({', '.join(details)})" if details else "")


def _ordered(report: dict, variants: set[str]) -> list[str]:
    """The eval's variant order, then the rest by name."""
    first = [v for v in ((report.get("eval") or {}).get("variants") or []) if v in variants]
    return first + sorted(variants - set(first))
