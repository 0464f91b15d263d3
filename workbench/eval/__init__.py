"""Eval: every variant answers a held-out split, each answer scored as the arena scores it and stored, resumably.

`run_eval` is what `workbench eval` and the app's Eval tab run; see `workbench.eval.runner`.
"""

from workbench.eval.runner import EvalError, EvalPlan, plan_eval, run_eval

__all__ = ["EvalError", "EvalPlan", "plan_eval", "run_eval"]
