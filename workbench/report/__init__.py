"""Reports: pure functions over the rows `workbench.store.Store` returns (the report never loads a model).

`summary` counts and averages per variant; `exports` writes rows to files.
"""
