"""Flow selection: ``--flow NAME`` (repeatable, shell globs) and ``--exclude NAME``."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from planrunner.errors import UsageError


@dataclass(frozen=True, slots=True)
class Selection:
    """Which flows a command works on; empty ``include`` means all."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        """Whether no flow is left out."""
        return not self.include and not self.exclude

    def describe(self) -> str:
        """One line for outputs: ``all flows`` or ``--flow a* --exclude a-old``."""
        if self.everything:
            return "all flows"
        parts = [f"--flow {p}" for p in self.include] + [f"--exclude {p}" for p in self.exclude]
        return " ".join(parts)

    def as_json(self) -> dict[str, list[str]]:
        """The selection as JSON output shows it."""
        return {"flow": list(self.include), "exclude": list(self.exclude)}

    def names(self, flows: Sequence[str]) -> set[str]:
        """The selected names among ``flows``; a pattern that matches nothing is an error."""
        known = ", ".join(flows)
        for option, patterns in (("--flow", self.include), ("--exclude", self.exclude)):
            for pattern in patterns:
                if not fnmatch.filter(flows, pattern):
                    raise UsageError(
                        f'{option} "{pattern}" matches no flow of the plan (flows: {known})'
                    )
        chosen = {f for f in flows if not self.include or _any(f, self.include)}
        return {f for f in chosen if not _any(f, self.exclude)}


def _any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
