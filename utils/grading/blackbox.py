"""Lab 03's black box, served from the grader's side: the graded kernel only ever holds a remote.

In the student's kernel (:func:`install`): ``faces.BlackBox(...)`` makes a
:class:`RemoteBlackBox`, and a black box the grader passes to an answer arrives as one.  A
remote holds no network and no weights (the checkpoint is not even readable there): ``query``
sends the images to the grader, which answers with the real :class:`utils.faces.BlackBox` and
counts the queries there.

On the grader's side (:class:`Desk`), a query through a black box the grader passed goes to
that black box (its budget applies).  A query through a black box the notebook made itself goes,
while an answer call that received a black box runs, to *that* call's black box -- so a second
black box, or the notebook's global one, cannot get around the budget -- and otherwise to a
small set-up allowance (``blackbox_setup_queries``, for the notebook's own top-level cells).
"""

from __future__ import annotations

import sys

from utils.grading import wire

RemoteBlackBox = None      # the class, made by install() once utils.faces is imported
_server = None             # the kernel's server (kernel side)


# ============================================================================================
# the kernel's side


def install() -> tuple:
    """Make ``faces.BlackBox(...)`` give remotes; returns the classes the rules must leave alone."""
    global RemoteBlackBox
    from utils import faces

    base = faces.BlackBox
    size = getattr(faces, "SIZE", 64)
    dim = getattr(faces, "DIM", 64)

    class Remote(base):
        """A black box served by the grader: ``query(images)`` is answered (and counted) there."""

        __slots__ = ("_grading_ref",)

        def __init__(self, device=None, *, budget=None, **_ignored):
            if budget is not None and (not isinstance(budget, int) or budget < 0):
                raise ValueError(f"budget must be a non-negative int or None, got {budget!r}")
            account, _ = _call({"action": "open", "budget": budget})
            self._grading_ref = {"account": str(account)}

        def query(self, images):
            """Descriptors ``(N, 64)`` (NumPy float32) of float images ``(N, 1, 64, 64)``."""
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(images, torch.Tensor):
                images = images.detach()
            value, _ = _call({"action": "query", **self._grading_ref}, images)
            return value

        __call__ = query

        @property
        def queries(self) -> int:
            return _call({"action": "info", **self._grading_ref})[0]["queries"]

        @property
        def budget(self):
            return _call({"action": "info", **self._grading_ref})[0]["budget"]

        @property
        def remaining(self):
            info = _call({"action": "info", **self._grading_ref})[0]
            return float("inf") if info["budget"] is None else info["budget"] - info["queries"]

        def __repr__(self) -> str:
            return (f"<BlackBox served by the grader: query(float images (N, 1, {size}, {size}) "
                    f"in [0, 1]) -> descriptors (N, {dim})>")

    Remote.__name__ = Remote.__qualname__ = "BlackBox"
    Remote.__module__ = base.__module__

    def new(cls, *args, **kwargs):
        if cls is base and kwargs.get("_network") is None:
            return object.__new__(Remote)
        return object.__new__(cls)

    base.__new__ = staticmethod(new)
    RemoteBlackBox = Remote
    return (base,)


def connect(server) -> None:
    global _server
    _server = server


def _call(fields: dict, payload=None):
    from utils import faces

    if _server is None:
        raise RuntimeError("the grader's black box is not connected")
    try:
        return _server.request("blackbox", fields, payload)
    except wire.RemoteError as error:
        if error.type_name == "QueryBudgetExceeded":
            raise faces.QueryBudgetExceeded(error.message) from None
        if error.type_name in ("ValueError", "TypeError", "LookupError"):
            raise {"ValueError": ValueError, "TypeError": TypeError,
                   "LookupError": LookupError}[error.type_name](error.message) from None
        raise RuntimeError(f"the grader's black box: {error}") from None


def encode(remote) -> dict:
    return {"$": "blackbox", **remote._grading_ref}


def decode(node: dict, server) -> object:
    remote = object.__new__(RemoteBlackBox)
    if isinstance(node.get("h"), str):
        remote._grading_ref = {"handle": node["h"]}
    else:
        remote._grading_ref = {"account": wire._field(node, "account", str)}
    return remote


# ============================================================================================
# the grader's side


class Desk:
    """Answers the black-box requests of one kernel, with every budget enforced here."""

    def __init__(self, session, setup_queries: int):
        self.session = session
        self.setup_queries = setup_queries
        self.accounts: dict[str, dict] = {}
        self._setup_box = None

    def setup_box(self):
        if self._setup_box is None:
            from utils import faces

            self._setup_box = faces.BlackBox(budget=self.setup_queries)
        return self._setup_box

    def handle(self, fields: dict, payload):
        from utils import faces

        action = fields.get("action")
        if action == "open":
            budget = fields.get("budget")
            if budget is not None and (type(budget) is not int or budget < 0):
                raise ValueError("budget must be a non-negative int or None")
            account = wire.new_id()
            self.accounts[account] = {"budget": budget, "queries": 0}
            return account
        if "handle" in fields:
            box = self.session.handles.get(str(fields["handle"]))
            if not isinstance(box, faces.BlackBox):
                raise LookupError("this black box belonged to an earlier call and is closed")
            account = None
        else:
            account = self.accounts.get(str(fields.get("account")))
            if account is None:
                raise LookupError("unknown black box")
            box = self.session.current_blackbox() or self.setup_box()
        if action == "info":
            if account is not None:
                return {"queries": account["queries"], "budget": account["budget"]}
            return {"queries": box.queries, "budget": box.budget}
        if action != "query":
            raise ValueError(f"unknown black-box action {action!r}")
        count = len(payload) if hasattr(payload, "__len__") else 0
        if account is not None and account["budget"] is not None and \
                account["queries"] + count > account["budget"]:
            raise faces.QueryBudgetExceeded(
                f"this query of {count} images would exceed the black box's budget of "
                f"{account['budget']} queries ({account['queries']} used)")
        descriptors = box.query(payload)
        if account is not None:
            account["queries"] += count
        return descriptors
