"""The one error type for bad data inputs."""

from __future__ import annotations

from xlamaml.trainables.errors import XlamamlError


class DataError(XlamamlError, ValueError):
    """A bad data file or argument, told in one line: `<file>[:<line>]: <what was wrong>; expected <what>`."""

    def __init__(self, where: str, problem: str, expected: str, line: int | None = None) -> None:
        self.where = str(where)
        self.line = line
        self.problem = problem
        self.expected = expected
        loc = self.where if line is None else f"{self.where}:{line}"
        # Quoted file text can hold control characters: keep the message on one line whatever it quotes.
        msg = f"{loc}: {problem}; expected {expected}"
        super().__init__(" ".join(msg.splitlines()))
