"""What `calibrate run` shows while it measures: a live display in a terminal (rich), plain lines otherwise.

Both get the same events from the runner: a point starts, vLLM's start-up phase changes, a point finishes (measured
against predicted), a message. The live display keeps the point in progress, the elapsed time and an estimate of
what is left, vLLM's phase, and a table of the finished points; lines print each event once.
"""

from __future__ import annotations

import sys
import time


class Lines:
    """One line per event (output that is not a terminal, or --no-progress)."""

    def __init__(self, echo=print):
        self.echo = echo
        self.started = time.monotonic()
        self.state = None

    def message(self, text: str) -> None:
        self.echo(text)

    def point_started(self, index: int, total: int, label: str, detail: str) -> None:
        self.echo(f"[{index + 1}/{total}] {label}: running ({detail}), elapsed {self.elapsed():.0f} s")

    def vllm_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.echo(f"vLLM: {state}")

    def point_finished(self, index: int, total: int, label: str, measured, predicted, outcome: str) -> None:
        left = self.elapsed() / (index + 1) * (total - index - 1)
        self.echo(f"[{index + 1}/{total}] {label}: {outcome}; elapsed {self.elapsed():.0f} s, about {left:.0f} s left")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        pass


class Live(Lines):
    """A live display (rich) redrawn in place: the header line and a table of finished points."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.live import Live as RichLive

        super().__init__(echo=self._print)
        self.console = console or Console()
        self.rows: list[tuple[str, str, str, str]] = []
        self.current = "starting"
        self.total, self.index = 0, 0
        self.live = RichLive(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _print(self, text: str) -> None:
        self.live.console.print(text, highlight=False, markup=False)

    def _render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        done = len(self.rows)
        left = self.elapsed() / done * (self.total - done) if done and self.total else None
        header = Text(f"point {min(self.index + 1, self.total) if self.total else 0}/{self.total}: {self.current}  |  "
                      f"vLLM: {self.state or 'starting'}  |  elapsed {self.elapsed():.0f} s"
                      + (f", about {left:.0f} s left" if left is not None else ""))
        table = Table("point", "measured tok/s", "predicted tok/s", "outcome", expand=False)
        for row in self.rows:
            table.add_row(*row)
        return Group(header, table)

    def _refresh(self) -> None:
        self.live.update(self._render())

    def point_started(self, index: int, total: int, label: str, detail: str) -> None:
        self.index, self.total, self.current = index, total, f"{label} ({detail})"
        self._refresh()

    def vllm_state(self, state: str) -> None:
        self.state = state
        self._refresh()

    def point_finished(self, index: int, total: int, label: str, measured, predicted, outcome: str) -> None:
        self.rows.append((label, f"{measured:,.1f}" if measured is not None else "-",
                          f"{predicted:,.1f}" if predicted is not None else "-", outcome))
        self.index, self.total = index + 1, total
        self.current = "done" if index + 1 == total else "next point"
        self._refresh()

    def close(self) -> None:
        self._refresh()
        self.live.stop()


def choose(echo=print, enabled: bool | None = None, stream=None):
    """The live display when ``enabled`` (None: when ``stream``, default stdout, is a terminal), else lines."""
    stream = stream if stream is not None else sys.stdout
    if enabled is None:
        enabled = bool(getattr(stream, "isatty", lambda: False)())
    if enabled:
        try:
            from rich.console import Console

            return Live(Console(file=stream))
        except ImportError:  # rich is a dependency; without it, lines
            pass
    return Lines(echo)
