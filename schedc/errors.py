"""Every error a user can cause raises a SchedcError subclass; the CLI prints its message and exits 2."""

from __future__ import annotations


class SchedcError(Exception):
    """Base class: the message is one line that says what is wrong and what to do."""


class ProfileError(SchedcError):
    """A profile file is missing, corrupt, or does not fit the request."""


class ScheduleError(SchedcError):
    """A schedule file is missing, corrupt, of an unknown version, or does not fit the model."""


class BudgetError(SchedcError):
    """A budget outside (0, 1]."""


class SolverError(SchedcError):
    """An unknown solver, or a constraint set no schedule can satisfy."""


class ModelError(SchedcError):
    """A model that cannot be found or loaded, or whose blocks cannot be identified."""


class ReferenceSampleError(SchedcError):
    """The full-compute reference is not a usable sample (NaN/inf, or far outside the data's range)."""


class OutputError(SchedcError):
    """An output path that cannot be written, or that would overwrite one of the command's inputs."""
