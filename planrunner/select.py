"""Selection: ``--flow NAME`` (repeatable, shell globs), ``--exclude NAME``, and the time
window ``--from TIME`` / ``--to TIME`` (both inclusive, as a plan's ``from``/``to``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from planrunner.errors import UsageError

DAY_MS = 86_400_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which flows and times a command works on; empty ``include`` means all flows, a
    ``start``/``end`` of None no bound (epoch ms, both inclusive)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    start: int | None = None
    end: int | None = None

    @property
    def everything(self) -> bool:
        """Whether nothing is left out (no flow, no time)."""
        return not self.include and not self.exclude and not self.windowed

    @property
    def windowed(self) -> bool:
        """Whether ``--from`` or ``--to`` narrows the entries by time."""
        return self.start is not None or self.end is not None

    def in_window(self, trigger_time: int) -> bool:
        """Whether an entry at ``trigger_time`` (epoch ms) is inside ``--from``/``--to``."""
        return (self.start is None or trigger_time >= self.start) and (
            self.end is None or trigger_time <= self.end
        )

    def describe(self) -> str:
        """One line for outputs: ``all flows`` or ``--flow a* --exclude a-old --from ...``."""
        if self.everything:
            return "all flows"
        from planrunner import times

        parts = [f"--flow {p}" for p in self.include] + [f"--exclude {p}" for p in self.exclude]
        if self.start is not None:
            parts.append(f"--from {times.format_utc(self.start)}")
        if self.end is not None:
            parts.append(f"--to {times.format_utc(self.end)}")
        return " ".join(parts)

    def as_json(self) -> dict[str, list[str] | int]:
        """The selection as JSON output shows it (``from``/``to`` in epoch ms, when given)."""
        doc: dict[str, list[str] | int] = {"flow": list(self.include), "exclude": list(self.exclude)}
        if self.start is not None:
            doc["from"] = self.start
        if self.end is not None:
            doc["to"] = self.end
        return doc

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


def window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` as epoch ms: any time form ``--now`` takes (naive is UTC); a bare
    date as ``--to`` covers its whole day, as a plan's ``to`` does."""
    from planrunner import times

    bounds: list[int | None] = []
    for option, text in (("--from", start), ("--to", end)):
        if text is None:
            bounds.append(None)
            continue
        try:
            ms = times.parse_now(text)
        except times.TimeError as e:
            raise UsageError(f"{option}: {e}") from None
        if option == "--to" and _DATE.fullmatch(text.strip()):
            ms += DAY_MS - 1
        bounds.append(ms)
    first, last = bounds
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from {start} is after --to {end}: the window is empty")
    return first, last
