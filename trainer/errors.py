"""The trainer's error types: one base, so a caller (the CLI, the service) can catch every expected
failure in one place and let real bugs through. Every one survives pickling, because training jobs
run in a child process and their errors travel back."""

from __future__ import annotations

__all__ = ["TrainerError", "TrainingError"]


class TrainerError(Exception):
    """A failure the user can act on; ``str(err)`` is the whole message, ready to show."""


class TrainingError(TrainerError):
    """Training itself failed, e.g. the loss became NaN or infinite (a learning rate too high)."""
