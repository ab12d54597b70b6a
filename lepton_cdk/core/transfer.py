"""What both clouds' ``DataTransferJob`` accept: migration modes, a schedule, prefix filters, and their checks.

Kept here so the AWS (DataSync) and GCP (Storage Transfer Service) jobs take
exactly the same values and report the same problems; each cloud only turns
them into its own resources. Standard library only.

Modes:

- ``"full"``: copy every object of the source prefix, overwriting what is
  already in the destination. Objects that exist only in the destination are
  kept unless ``delete_unique_in_sink=True`` (a true mirror).
- ``"incremental"``: copy only objects that are new or differ from the
  destination copy; nothing is ever deleted.
- ``"partial"``: ``incremental`` restricted to ``include_prefixes`` and/or
  not ``exclude_prefixes`` (relative to the source prefix).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # validation imports the framework (cdktf); this module stays standard library only
    from .validation import PropChecks

MODES = ("full", "incremental", "partial")

_PREFIX = re.compile(r"^[^\x00-\x1f*?\[\]|\\]*$")
_MAX_FILTERS = 1000  # STS accepts up to 1000 include and 1000 exclude prefixes


@dataclass(frozen=True)
class TransferSchedule:
    """When a transfer runs: once on a date, or every ``repeat_hours`` from a start date. Times are UTC.

    Build it with :meth:`once`, :meth:`daily` or :meth:`every`. Without a
    schedule (``schedule=None``) a job never starts by itself.
    """

    start_date: dt.date
    start_time: dt.time = dt.time(0, 0)
    repeat_hours: int | None = None  # None: runs once, at start_date start_time

    @classmethod
    def once(cls, on: dt.date, *, at: dt.time = dt.time(0, 0)) -> TransferSchedule:
        """Run a single time, on ``on`` at ``at`` (UTC)."""
        return cls(start_date=on, start_time=at)

    @classmethod
    def daily(cls, start_date: dt.date, *, at: dt.time = dt.time(2, 0)) -> TransferSchedule:
        """Run every day at ``at`` (UTC; default 02:00), from ``start_date`` on."""
        return cls(start_date=start_date, start_time=at, repeat_hours=24)

    @classmethod
    def every(cls, hours: int, start_date: dt.date, *, at: dt.time = dt.time(0, 0)) -> TransferSchedule:
        """Run every ``hours`` hours (a divisor of 24, so both clouds can express it), from ``start_date`` at ``at``."""
        return cls(start_date=start_date, start_time=at, repeat_hours=hours)

    @property
    def recurring(self) -> bool:
        """True when the transfer repeats."""
        return self.repeat_hours is not None

    def cron_expression(self) -> str:
        """The schedule as an AWS cron expression (DataSync ``schedule_expression``).

        A one-off run pins day, month and year (``cron(30 2 14 3 ? 2027)``);
        a repeating one fires at the start minute every ``repeat_hours``
        hours starting at the start hour. DataSync has no start date: a
        repeating task runs from its first matching time after deploy.
        """
        minute, hour = self.start_time.minute, self.start_time.hour
        if self.repeat_hours is None:
            d = self.start_date
            return f"cron({minute} {hour} {d.day} {d.month} ? {d.year})"
        if self.repeat_hours == 24:
            return f"cron({minute} {hour} * * ? *)"
        return f"cron({minute} {hour % self.repeat_hours}/{self.repeat_hours} * * ? *)"

    def problems(self, prop: str = "schedule") -> list[str]:
        """Every reason this schedule cannot be expressed on both clouds."""
        found = []
        if not isinstance(self.start_date, dt.date) or isinstance(self.start_date, dt.datetime):
            found.append(f"{prop}.start_date={self.start_date!r} is not a date; pass datetime.date(YYYY, M, D)")
        if not isinstance(self.start_time, dt.time) or self.start_time.tzinfo is not None:
            found.append(f"{prop}.start_time={self.start_time!r} is not a naive datetime.time; pass a UTC time such as datetime.time(2, 0)")
        elif self.start_time.second or self.start_time.microsecond:
            found.append(f"{prop}.start_time={self.start_time.isoformat()} has seconds; schedules run on whole minutes")
        if self.repeat_hours is not None and (isinstance(self.repeat_hours, bool) or self.repeat_hours not in (1, 2, 3, 4, 6, 8, 12, 24)):
            found.append(f"{prop}.repeat_hours={self.repeat_hours!r} must divide a day (1, 2, 3, 4, 6, 8, 12 or 24) so both "
                         "DataSync cron and Storage Transfer intervals can express it")
        return found


def _prefix_problems(prop: str, value: object, *, folder: bool) -> list[str]:
    if not isinstance(value, str):
        return [f"{prop}={value!r} is not a string; pass an object key prefix such as 'datasets/'"]
    if value.startswith("/"):
        return [f"{prop}={value!r} starts with '/'; object keys have no leading slash, drop it"]
    if not _PREFIX.match(value):
        return [f"{prop}={value!r} holds a wildcard, '|', '\\' or a control character; pass a plain key prefix"]
    if folder and value and not value.endswith("/"):
        return [f"{prop}={value!r} must end with '/' (a folder), e.g. {value + '/'!r}; or '' for the whole bucket"]
    return []


def check_transfer_props(
    checks: PropChecks,
    *,
    mode: str,
    source_prefix: str,
    destination_prefix: str,
    include_prefixes: Sequence[str],
    exclude_prefixes: Sequence[str],
    delete_unique_in_sink: bool,
    schedule: TransferSchedule | None,
) -> None:
    """Record every problem with the props both clouds' ``DataTransferJob`` share in ``checks``."""
    if mode not in MODES:
        checks.add(f"mode={mode!r} is not a migration mode; use one of {', '.join(repr(m) for m in MODES)}")
    for prop, value in (("source_prefix", source_prefix), ("destination_prefix", destination_prefix)):
        if checks.known(value):
            checks.add(*_prefix_problems(prop, value, folder=True))
    for prop, values in (("include_prefixes", include_prefixes), ("exclude_prefixes", exclude_prefixes)):
        if isinstance(values, str):
            checks.add(f"{prop}={values!r} is a string; pass a list of prefixes, e.g. [{values!r}]")
            continue
        if len(values) > _MAX_FILTERS:
            checks.add(f"{prop} has {len(values)} entries; at most {_MAX_FILTERS} are allowed, use shorter common prefixes")
        for i, value in enumerate(values):
            if checks.known(value):
                checks.add(*_prefix_problems(f"{prop}[{i}]", value, folder=False))
                if value == "":
                    checks.add(f"{prop}[{i}]='' matches every object; remove it")
    for prop, values in (("include_prefixes", include_prefixes), ("exclude_prefixes", exclude_prefixes)):
        plain = [v for v in values if isinstance(v, str) and v and checks.known(v)] if not isinstance(values, str) else []
        nested = sorted({(a, b) for a in plain for b in plain if a != b and b.startswith(a)})
        if nested:
            a, b = nested[0]
            checks.add(f"{prop} has {b!r} inside {a!r}; each prefix must cover a distinct part of the bucket, drop {b!r}")
    if not isinstance(include_prefixes, str) and not isinstance(exclude_prefixes, str) and include_prefixes:
        outside = [e for e in exclude_prefixes if isinstance(e, str) and checks.known(e) and e
                   and not any(isinstance(i, str) and e.startswith(i) for i in include_prefixes)]
        if outside:
            checks.add(f"exclude_prefixes {outside!r} start with none of include_prefixes; an exclusion only narrows an "
                       "included prefix, so drop it or include its parent")
    filtered = bool(include_prefixes) or bool(exclude_prefixes)
    if mode == "partial" and not filtered and not isinstance(include_prefixes, str):
        checks.add("mode='partial' needs include_prefixes and/or exclude_prefixes; pass them, or use mode='incremental'")
    if mode in ("full", "incremental") and filtered:
        checks.add(f"include_prefixes/exclude_prefixes are only used with mode='partial', got mode={mode!r}; "
                   "use mode='partial' or drop the filters")
    if delete_unique_in_sink and mode != "full":
        checks.add(f"delete_unique_in_sink=True needs mode='full' (a mirror), got mode={mode!r}; "
                   "use mode='full' or keep destination-only objects")
    if schedule is not None:
        if isinstance(schedule, TransferSchedule):
            checks.add(*schedule.problems())
        else:
            checks.add(f"schedule={schedule!r} is not a TransferSchedule; use TransferSchedule.once/daily/every, or None")
