"""schedc: an offline cache-schedule compiler for diffusion models.

`import schedc` stays light: the library entry points below are imported on first use (PEP 562),
and none of them needs torch unless a solver runs the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schedc.version import __version__

if TYPE_CHECKING:
    from schedc.compile import Compiled, compile_schedule, compile_solution
    from schedc.solvers import Constraints, SolveContext

_LAZY = {
    "compile_schedule": "schedc.compile",
    "compile_solution": "schedc.compile",
    "Compiled": "schedc.compile",
    "Constraints": "schedc.solvers",
    "SolveContext": "schedc.solvers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Compiled", "Constraints", "SolveContext", "__version__", "compile_schedule", "compile_solution"]
