"""The stack's errors: each says which part, which port or which file, and what to do."""

from __future__ import annotations

from tabloop.errors import TabloopError


class StackError(TabloopError):
    """The local stack cannot be started, stopped or reported as asked."""


class PortTakenError(StackError):
    """A port a part of the stack needs is already in use by another program."""


class NotReadyError(StackError):
    """A part of the stack exited or did not answer within its timeout while starting."""


class StackBusyError(StackError):
    """Another ``python -m tools.stack`` command holds the stack's lock."""
