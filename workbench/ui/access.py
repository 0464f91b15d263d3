"""Who may do what in the app. Without `--auth` the app belongs to whoever runs it on their own machine (loopback by
default): everyone is an admin. With `serve --auth FILE` each login has a role (`workbench.auth`): a rater gets
the arena and their own ratings; only an admin trains, indexes, evaluates, reads the report, exports or sees other
raters' ratings.

Hiding a tab is only a courtesy: any logged-in browser can call any event through Gradio's API. So every handler
of an admin tab is registered through `Access.admin_only`, which checks the caller's role on the server.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

import gradio as gr

from workbench.auth import Users


class Access:
    def __init__(self, users: Users | None = None):
        self.users = users

    def is_admin(self, request: gr.Request | None) -> bool:
        if self.users is None:
            return True
        return self.users.role(getattr(request, "username", None)) == "admin"

    def admin_only(self, handler: Callable, quiet: bool = False) -> Callable:
        """`handler` behind a role check: Gradio passes the caller's request in an extra parameter (the signature
        is how Gradio decides what to pass), the check drops it and refuses anyone but an admin, with an error or,
        when `quiet` (a timer's refresh), by changing nothing."""
        if self.users is None:
            return handler
        signature = inspect.signature(handler)
        params = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        at = next(  # after the plain inputs: before a gr.Progress default or `*values`
            (i for i, p in enumerate(params) if p.default is not p.empty or p.kind not in positional), len(params)
        )
        request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)

        def guarded(*args, **kwargs):
            args = list(args)
            caller = args.pop(at) if len(args) > at else kwargs.pop("request", None)
            if not self.is_admin(caller):
                if quiet:
                    return gr.skip()
                raise gr.Error("only an admin can do this; ask one to log you in with the admin role")
            return handler(*args, **kwargs)

        guarded.__signature__ = signature.replace(parameters=[*params[:at], request, *params[at:]])
        # Resolved type hints, what Gradio reads to pass a request or event data (a `gr.SelectData` parameter).
        guarded.__annotations__ = {**_type_hints(handler), "request": gr.Request}
        guarded.__name__ = getattr(handler, "__name__", "handler")
        return guarded


def _type_hints(handler: Callable) -> dict:
    """`handler`'s parameter types resolved in its own module (its annotations are strings there), or none."""
    try:
        return typing.get_type_hints(handler)
    except (NameError, TypeError):
        return {}
