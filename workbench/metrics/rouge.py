"""ROUGE as an `evaluate` metric computed by Google's `rouge-score` package, loadable offline by path.

Same inputs and defaults as the hub's `rouge` metric (rouge1, rouge2, rougeL, rougeLsum F-measures; one
reference string per prediction), but the aggregate is the plain mean rather than a bootstrap estimate, so a score
is reproducible. `rouge-score`'s tokenizer keeps only ASCII letters and digits.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE F-measures between predictions and references, computed with the rouge-score package."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted texts.
    references: list of reference texts, one per prediction.
    rouge_types: which scores to return (default rouge1, rouge2, rougeL, rougeLsum).
    use_stemmer: apply the Porter stemmer before matching (default False).
    use_aggregator: return the mean of each score (default True) instead of one value per prediction.
Returns:
    {rouge_type: F-measure}, each a float, or a list of floats without aggregation.
"""
_CITATION = """@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    pages = "74--81",
}"""


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True):
        rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer)
        scores = [scorer.score(ref, pred) for ref, pred in zip(references, predictions)]
        result = {key: [s[key].fmeasure for s in scores] for key in rouge_types}
        if use_aggregator:
            return {key: sum(values) / len(values) if values else 0.0 for key, values in result.items()}
        return result
