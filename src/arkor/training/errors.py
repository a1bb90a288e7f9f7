"""Errors raised by the training package.

::

    TrainingError                 catch-all base
    ├── DatasetError              dataset rows that cannot be trained on (lists line numbers)
    ├── AdapterIncompatible       an imported adapter does not fit the base model
    ├── TrainingCancelled         SIGTERM/SIGINT arrived while training
    └── RunSpecError              the runner's SPEC.json is malformed

``JobConfigError`` (a JobConfig field is missing or invalid; names the field) is a
``ValueError`` defined with the field table in :mod:`arkor.contract.job_config`.

The runner turns every one of these (and any other exception) into a ``training.failed``
event whose ``error`` is ``str(exc)``, so each message is written for the person who
submitted the job.
"""

from __future__ import annotations

from typing import NamedTuple

# Defined with the JobConfig table it reports on; re-exported for the training code.
from arkor.contract.job_config import JobConfigError as JobConfigError

MAX_LISTED_PROBLEMS = 20


class TrainingError(Exception):
    """Base class of every error the training package raises on purpose."""




class DatasetProblem(NamedTuple):
    """One problem in a dataset: ``line`` is 1-based (a row number for dataset directories),
    or ``None`` when the problem concerns the whole dataset."""

    line: int | None
    message: str


class DatasetError(TrainingError, ValueError):
    """``hide_details`` keeps the file's content out of the message: for a file the caller
    did not send (a path on the server), only the count and the line numbers are shown."""

    def __init__(self, problems: list[DatasetProblem], *, unit: str = "line",
                 hide_details: bool = False) -> None:
        self.problems = problems
        self.unit = unit
        super().__init__(self._render_hidden() if hide_details else self._render())

    def without_details(self) -> DatasetError:
        return DatasetError(self.problems, unit=self.unit, hide_details=True)

    def _render_hidden(self) -> str:
        lines = sorted({p.line for p in self.problems if p.line is not None})
        head = "Invalid dataset: not a valid chat dataset"
        if lines:
            shown = ", ".join(map(str, lines[:MAX_LISTED_PROBLEMS]))
            more = ", ..." if len(lines) > MAX_LISTED_PROBLEMS else ""
            count = len(self.problems)
            head += (f" ({count} problem{'s' if count != 1 else ''} on {self.unit}s "
                     f"{shown}{more})")
        return head + "; details are not shown for files read from the server's disk"

    def _render(self) -> str:
        rows = [p for p in self.problems if p.line is not None]
        whole = [p for p in self.problems if p.line is None]
        if whole and not rows:
            return "Invalid dataset: " + "; ".join(p.message for p in whole)
        count = len(self.problems)
        head = f"Invalid dataset: {count} problem{'s' if count != 1 else ''} found"
        lines = [head]
        for problem in self.problems[:MAX_LISTED_PROBLEMS]:
            where = f"{self.unit} {problem.line}" if problem.line is not None else "dataset"
            lines.append(f"  {where}: {problem.message}")
        if count > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {count - MAX_LISTED_PROBLEMS} more")
        return "\n".join(lines)


class AdapterIncompatible(TrainingError, ValueError):
    """The adapter directory cannot be used with the chosen base model."""


class TrainingCancelled(TrainingError):
    def __init__(self, signal_name: str = "SIGTERM") -> None:
        self.signal_name = signal_name
        super().__init__(f"cancelled ({signal_name})")


class RunSpecError(TrainingError, ValueError):
    """SPEC.json given to ``python -m arkor.training.runner`` is missing or malformed."""
