"""Errors a person can act on.

Every failure that reaches the CLI is an :class:`XpdError`; the CLI prints its message on one line
and exits with its ``exit_code``. Code raises these instead of printing and exiting itself.
"""

from __future__ import annotations


class XpdError(Exception):
    """A failure with a message that says what is wrong and what to do."""

    exit_code = 1

    def __init__(self, message: str, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        # Further lines (one problem each) printed after the message, e.g. every validation error.
        self.details = details or []


class InputError(XpdError):
    """The user's input (inventory, flags, config file) is wrong: exit status 2."""

    exit_code = 2


class NotInstalledError(XpdError):
    """This machine lacks a program or Python package the command needs: exit status 2. The message
    names the command that installs it."""

    exit_code = 2


class ExecutionError(XpdError):
    """Something failed while changing or probing hosts or services."""

    exit_code = 1


class UnhealthyError(XpdError):
    """A probe ran fine but found the cluster unhealthy (status, checks)."""

    exit_code = 3
