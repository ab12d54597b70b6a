"""Progress reporting for long commands.

On a terminal a spinner shows the running stage and finished stages stay on
screen with their duration; when ``CI`` is set or the stream is not a TTY,
plain timestamped lines are printed instead (log-friendly, no control codes).
Progress goes to stderr so that ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def wants_plain_output(stream: TextIO) -> bool:
    """True when progress should be plain lines: under CI or when not a TTY."""
    return bool(os.environ.get("CI")) or not (hasattr(stream, "isatty") and stream.isatty())


class ProgressReporter:
    """Reports stages (``with reporter.stage("Training"):``) and notes within them."""

    def __init__(self, stream: TextIO | None = None, *, plain: bool | None = None, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._plain = wants_plain_output(self._stream) if plain is None else plain
        self._quiet = quiet
        self._started = time.monotonic()
        self._status = None
        self._console = None
        if not self._plain and not quiet:
            from rich.console import Console  # only on a terminal

            self._console = Console(file=self._stream, highlight=False)

    def _line(self, text: str) -> None:
        if self._quiet:
            return
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            elapsed = time.monotonic() - self._started
            self._stream.write(f"[{elapsed:7.1f}s] {text}\n")
            self._stream.flush()

    def __call__(self, message: str) -> None:
        """A note inside the current stage (e.g. an epoch's losses)."""
        if self._status is not None:
            self._status.update(f"{self._stage_name}: {message}")
        else:
            self._line(f"  {message}")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run a named stage; prints its duration when it ends, or that it failed."""
        self._stage_name = name
        start = time.monotonic()
        if self._console is not None:
            self._status = self._console.status(name)
            self._status.start()
        else:
            self._line(f"{name} ...")
        try:
            yield
        except BaseException:
            self._stop_status()
            self._line(f"x {name} failed after {time.monotonic() - start:.1f}s")
            raise
        self._stop_status()
        self._line(f"✓ {name} ({time.monotonic() - start:.1f}s)")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


class TransferProgress:
    """Bytes and objects of a transfer: a rich progress bar on a terminal, a plain line every ``interval_s`` otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, *, plain: bool | None = None, quiet: bool = False,
                 interval_s: float = 5.0) -> None:
        import threading

        self._label = label
        self._stream = stream or sys.stderr
        self._plain = wants_plain_output(self._stream) if plain is None else plain
        self._quiet, self._interval = quiet, interval_s
        self._lock = threading.Lock()
        self._bytes = self._objects = self._total_bytes = self._total_objects = 0
        self._started = self._last = time.monotonic()
        self._bar = self._task = None

    def start(self, objects: int, total_bytes: int) -> None:
        """Begin: ``objects`` and ``total_bytes`` are what will move."""
        self._total_objects, self._total_bytes = objects, total_bytes
        self._started = self._last = time.monotonic()
        if self._quiet:
            return
        if not self._plain:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TextColumn("{task.fields[objects]}"), TimeRemainingColumn(),
                                 console=Console(file=self._stream), transient=False)
            self._task = self._bar.add_task(self._label, total=max(total_bytes, 1), objects=f"0/{objects} objects")
            self._bar.start()
        else:
            self._write(f"{self._label}: {objects:,} objects, {total_bytes:,} bytes to move")

    def _write(self, text: str) -> None:
        self._stream.write(f"[{time.monotonic() - self._started:7.1f}s] {text}\n")
        self._stream.flush()

    def advance(self, *, byte_count: int = 0, objects: int = 0) -> None:
        """Add moved bytes (negative when a failed attempt is taken back) and finished objects."""
        with self._lock:
            self._bytes += byte_count
            self._objects += objects
            if self._quiet:
                return
            if self._bar is not None:
                self._bar.update(self._task, completed=self._bytes, objects=f"{self._objects}/{self._total_objects} objects")
            elif time.monotonic() - self._last >= self._interval:
                self._last = time.monotonic()
                self._write(f"{self._label}: {self._objects:,}/{self._total_objects:,} objects, "
                            f"{self._bytes:,}/{self._total_bytes:,} bytes")

    def finish(self) -> None:
        """Stop the bar (or print the last plain line)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not self._quiet:
            self._write(f"{self._label}: {self._objects:,}/{self._total_objects:,} objects, {self._bytes:,} bytes "
                        f"in {time.monotonic() - self._started:.1f}s")
