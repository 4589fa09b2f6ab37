"""Error types shared by the whole package.

Every error about bad input names the input, the field and what was expected,
so that an operator reading a log line knows what to fix without the source.
"""

from __future__ import annotations


class VibrationAnomalyError(Exception):
    """Base class: catch this to catch every error the package raises on purpose."""


class Refusal(VibrationAnomalyError):
    """Input the package refuses on purpose (bad data, an untrusted bundle): the caller's to fix, not a bug.

    The command line answers every ``Refusal`` with exit 2 and its one-line message (``clikit``).
    """


class InputError(Refusal, ValueError):
    """Bad input data: names what was wrong so the caller can count or report it."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


class EngineError(VibrationAnomalyError, RuntimeError):
    """An inference backend could not load, wake, infer or sleep."""


class EngineStateError(EngineError):
    """A backend call came in the wrong lifecycle state (e.g. infer while asleep)."""
