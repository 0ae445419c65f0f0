"""One problem found in a deposit: where (a dotted path) and what."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DepositInvalid(ValueError):
    """The deposit is incomplete or invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem], subject: str = "the deposit",
                 where: str = "the BioImage Archive") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{subject} is not ready for {where} "
                         f"({len(self.problems)} problem(s)):\n{lines}")
