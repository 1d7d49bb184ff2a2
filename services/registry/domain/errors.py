"""Domain errors, in French: their message is what the exam center reads."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the certification or of the registry refuses a command."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RuleViolation(DomainError):
    """The command breaks a rule (jury composition, validity window, ...)."""


class ConflictingState(DomainError):
    """The command conflicts with what is already recorded."""


class UnknownEntity(DomainError):
    """The command names something that does not exist (for this exam center)."""


class LineError(DomainError):
    """One line of a deliberation is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
