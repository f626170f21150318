"""Bounded-memory view of a child's output, fed raw chunks as they stream past.

A 236 GB model start prints for half an hour; the launcher must not hold that
log. The watcher keeps, per stream, the last ``tail_bytes`` of output, plus
every line that contains one of ``classify.KEY_MARKERS`` (a cause line can
scroll out of the tail behind shutdown noise) and the latest start-up phase.
Scanning is a handful of C-level ``bytearray.find`` calls per chunk, no
per-line Python work, and it stops once the server is up (``CudaPhase.SERVING``), or, with a
``StartClock``, once it accepts requests (``startup.READY_MARKER``).

With a ``StartClock`` the watcher also times the start (``qwen_runtime.startup``): each phase's
first line is stamped with ``now()``, the lines with vLLM's KV-cache figures are kept for the
report, and ``reports(now)`` gives the report lines to print (at a phase change, on a heartbeat,
once ready), for an output whose last line is complete, so a report never splits a line of vLLM's.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable

from .classify import KEY_MARKERS, PHASE_MARKERS, KeyLine, classify, clean
from .record import CudaPhase, Record
from .startup import FIGURE_MARKERS, READY_MARKER, START_MARKERS, StartClock, StartPhase

# Once the server is up (CudaPhase.SERVING), scanning stops: start-up causes are
# behind us, and a crash while serving ends the output, so the tail holds it. A
# busy server's request logs then cost a copy and nothing more.

MAX_LINE_BYTES = 4096
_OVERLAP = max(
    len(m)
    for m in (*KEY_MARKERS, *FIGURE_MARKERS, READY_MARKER, *(p for p, _ in (*PHASE_MARKERS, *START_MARKERS)))
)
_LINE_MARKERS = KEY_MARKERS + FIGURE_MARKERS
REPORT_OUTPUT = 1
"""The launcher's fd its start reports go to (vLLM logs its lines to stdout)."""
_READY = object()
"""The event of ``READY_MARKER`` (the API server accepts requests)."""
_LINE_SPLIT = re.compile(r"\r\n|\n|\r")


class OutputWatcher:
    """Keeps the tail, the cause lines and the phase of a child's output."""

    def __init__(
        self,
        tail_bytes: int = 64 * 1024,
        max_key_lines: int = 64,
        clock: StartClock | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tail_bytes = tail_bytes
        self.clock = clock
        self._now = now
        self._report_due = False
        self._line_open: dict[int, bool] = {}
        """Per output: its last byte was not a newline (a report waits)."""
        self.phase: CudaPhase | None = None
        self.key_lines: deque[KeyLine] = deque(maxlen=max_key_lines)
        self._tails: dict[int, bytearray] = {}
        self._trimmed: set[int] = set()
        self._pending: dict[int, bytearray] = {}
        self._pending_phase: CudaPhase | None = None

    def feed(self, stream: int, chunk: bytes | memoryview) -> None:
        """Account for ``chunk`` read from ``stream`` (any hashable id, e.g. the fd); what is kept
        of it is copied (the launcher reads into one buffer again and again)."""
        tail = self._tails.setdefault(stream, bytearray())
        if len(chunk):
            self._line_open[stream] = chunk[-1] != 0x0A
        if stream in self._pending:
            self._complete_pending(stream, chunk)
        if not self._scanning and len(chunk) >= self.tail_bytes:
            tail[:] = memoryview(chunk)[-self.tail_bytes :]  # only the tail counts now: no copy of the rest
            self._trimmed.add(stream)
            return
        start = len(tail)
        tail += chunk
        if self._scanning:
            events = self._scan(tail, start)
            if events:
                self._apply(stream, tail, events)
        if len(tail) > 2 * self.tail_bytes:
            del tail[: len(tail) - self.tail_bytes]
            self._trimmed.add(stream)

    @property
    def _scanning(self) -> bool:
        if self.clock is not None:
            return self.clock.ready_at is None
        return self.phase != CudaPhase.SERVING

    def reports(self, now: float) -> list[tuple[int, bytes]]:
        """The start report lines to print now, as (output, line): after a phase change, on a
        heartbeat while starting, once ready; held while the output's last line is incomplete."""
        if self.clock is None:
            return []
        if self.clock.due(now):
            self._report_due = True
        if not self._report_due or self._line_open.get(REPORT_OUTPUT, False):
            return []
        self._report_due = False
        return [(REPORT_OUTPUT, self.clock.line(now))]

    def finish(self) -> None:
        """Flush key lines still waiting for their newline (the child has exited)."""
        for stream in list(self._pending):
            self._emit(self._pending.pop(stream))

    def tail_lines(self, max_lines: int = 200) -> list[str]:
        """The last lines of each stream, stdout's before stderr's (fds 1 and 2 order)."""
        lines: list[str] = []
        for stream in sorted(self._tails, key=str):
            data = bytes(self._tails[stream][-self.tail_bytes :])
            parts = _LINE_SPLIT.split(data.decode("utf-8", "replace"))
            if stream in self._trimmed or len(data) < len(self._tails[stream]):
                parts = parts[1:]
            lines.extend(p for p in parts[-max_lines:] if p.strip())
        return lines

    def classify(self, exit_code: int, max_model_len: int | None = None) -> Record:
        """The termination record for what this watcher saw, the child having exited ``exit_code``."""
        return classify(
            list(self.key_lines),
            self.tail_lines(),
            exit_code,
            phase=self.phase,
            max_model_len=max_model_len,
        )

    def _scan(self, tail: bytearray, start: int) -> list[tuple[int, int, object]]:
        """(position, marker length, phase, _READY, or None for a key line) of new matches."""
        region = max(0, start - _OVERLAP)
        events: list[tuple[int, int, object]] = []
        markers: list[tuple[bytes, object]] = list(PHASE_MARKERS)
        if self.clock is not None:
            markers += [(READY_MARKER, _READY), *START_MARKERS]
        for marker, phase in markers:
            pos = tail.rfind(marker, region)
            if pos >= 0 and pos + len(marker) > start:
                events.append((pos, len(marker), phase))
        for marker in _LINE_MARKERS if self.clock is not None else KEY_MARKERS:
            pos = tail.find(marker, region)
            while pos >= 0:
                if pos + len(marker) > start:
                    events.append((pos, len(marker), None))
                pos = tail.find(marker, pos + len(marker))
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def _apply(self, stream: int, tail: bytearray, events: list[tuple[int, int, object]]) -> None:
        line_end = -1
        for pos, _, phase in events:
            if phase is _READY:
                if self.clock is not None and self.clock.ready(self._now()):
                    self._report_due = True
                continue
            if isinstance(phase, CudaPhase | StartPhase):
                if isinstance(phase, CudaPhase):
                    self.phase = phase
                if self.clock is not None and self.clock.enter(phase, self._now()):
                    self._report_due = True
                continue
            if pos < line_end:
                continue  # a second marker on a line already kept
            line_start = max(tail.rfind(b"\n", 0, pos) + 1, pos - MAX_LINE_BYTES // 2)
            line_end = tail.find(b"\n", pos)
            if line_end < 0:
                self._pending[stream] = bytearray(tail[line_start:])
                self._pending_phase = self.phase
                return
            self._emit(tail[line_start:line_end])

    def _complete_pending(self, stream: int, chunk: bytes | memoryview) -> None:
        pending = self._pending[stream]
        head = bytes(chunk[:MAX_LINE_BYTES])  # no more of a line is kept
        newline = head.find(b"\n")
        pending += head if newline < 0 else head[:newline]
        if newline >= 0 or len(pending) >= MAX_LINE_BYTES:
            self._emit(self._pending.pop(stream), self._pending_phase)

    def _emit(self, raw: bytes | bytearray, phase: CudaPhase | None = None) -> None:
        data = bytes(raw[:MAX_LINE_BYTES])
        text = clean(data.decode("utf-8", "replace"))
        if self.clock is not None and any(m in data for m in FIGURE_MARKERS):
            self.clock.note(text)
            if not any(m in data for m in KEY_MARKERS):
                return
        self.key_lines.append(KeyLine(text, phase or self.phase))
