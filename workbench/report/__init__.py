"""The decision report: pure functions over stored rows and run manifests (the report never loads a model).

`rows` gathers what a report reads; `stats` and `preference` hold the statistics; `quality`, `hallucination`,
`cost` and `decision` build the sections; `build` puts them together; `render` and `plots` turn them into
Markdown and one offline HTML file; `summary` and `exports` serve the eval table and the ratings CSV.
"""

from workbench.report.build import build_report
from workbench.report.rows import ReportError, ReportRows, load_rows

__all__ = ["ReportError", "ReportRows", "build_report", "load_rows"]
