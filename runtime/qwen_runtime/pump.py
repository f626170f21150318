"""Copy the child's output to the launcher's own, so that the child never waits on the launcher.

vLLM logs from its event loop: a write to a full pipe stalls the API server. So the launcher
reads whenever the child's pipes hold data, and never blocks on anything else:

* its own stdout/stderr, when they are pipes or sockets (a pod's are: the container runtime
  reads them), are written without blocking; what the reader cannot take yet waits in memory.
  Only beyond ``MAX_PENDING`` waiting does the launcher stop reading the child, which then waits
  as it would writing to that reader directly: a log reader stalled for that long gets the
  server's output late, but whole;
* the child's pipes, and the launcher's own when they are pipes, are enlarged to ``PIPE_BYTES``
  (Linux's default pipe-max-size): room for the child while the launcher is not scheduled, and
  one write per chunk read instead of one per 64 KiB;
* a flood of small writes (one per log line, ~1 µs apart) would wake the launcher once per line
  whenever it keeps up (half the reads were one line when only a big read counted as a flood):
  data again within ``FLOOD_GAP_SECONDS`` of the last read is a flood, and the launcher naps
  ``NAP_SECONDS`` so that it is copied in big pieces, but only while one nap's worth of the flood
  fills at most a quarter of the pipe;
* every read goes into one buffer: a fresh megabyte per read (``os.read``) costs an mmap, an
  mremap, a munmap and a page fault per 4 KiB touched. With the per-line wake-ups that was
  half the launcher's CPU: 0.2-0.3 s per 100 MB of log lines before, 0.1-0.15 s now.

Files and terminals are written as they are, blocking (a file does not fill; a terminal is
shared with a shell, whose file flags are not the launcher's to change).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import selectors
import stat
import time
from collections import deque
from collections.abc import Callable

PIPE_BYTES = 1 << 20
READ_SIZE = PIPE_BYTES
BURST_BYTES = 16 << 10
"""A read at least this big means the child writes faster than the launcher wakes: a flood."""
NAP_SECONDS = 0.0005
FLOOD_GAP_SECONDS = 0.002
"""Data again this soon after the last read (naps included) means the child writes continuously."""
MAX_PENDING = 32 << 20
"""Output waiting for the reader beyond which the child is no longer read (and so waits)."""
FLUSH_SECONDS = 2.0
"""The child gone, a reader that takes nothing for this long is taken for gone: the rest is dropped."""


class Output:
    """fd 1 or 2 of the launcher: output the reader cannot take yet waits here."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.alive = True
        """False once the reader is gone (EPIPE): the child's output is still read, and discarded."""
        self.queue: deque[memoryview] = deque()
        """Waiting output, oldest first; the first may be half written."""
        self.waiting = 0
        self._flags: int | None = None
        with contextlib.suppress(OSError):
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                fcntl.fcntl(fd, fcntl.F_SETFL, self._flags | os.O_NONBLOCK)
            if stat.S_ISFIFO(mode):
                enlarge_pipe(fd)  # room for a whole read: one write per chunk, not one per 64 KiB

    @property
    def full(self) -> bool:
        """Enough waits: read no more of the child until the reader takes some."""
        return self.waiting >= MAX_PENDING

    def put(self, chunk: bytes | memoryview) -> None:
        """Write what the reader takes now; keep the rest, in order."""
        if not self.alive:
            return
        if self._flags is None:
            self._blocking_write(chunk)
            return
        view = memoryview(chunk)
        if not self.queue:
            view = view[self._write(view) :]
            if not view:
                return
        self.queue.append(memoryview(bytes(view)))  # the chunk's buffer is read into again
        self.waiting += len(view)

    def flush(self) -> int:
        """The reader has room: write what waits, as far as it goes; the bytes written."""
        total = 0
        while self.queue and self.alive:
            head = self.queue[0]
            written = self._write(head)
            total += written
            self.waiting -= written
            if written < len(head):
                self.queue[0] = head[written:]
                break
            self.queue.popleft()
        if not self.alive:
            self.queue.clear()
            self.waiting = 0
        return total

    def close(self) -> None:
        """The child is gone: give the rest to a reader that keeps taking some, then put the file
        flags back (the file may be shared with the launcher's parent)."""
        idle_since = time.monotonic()
        while self.queue and self.alive and (left := idle_since + FLUSH_SECONDS - time.monotonic()) > 0:
            if self.flush():
                idle_since = time.monotonic()
            elif self.queue:
                select.select([], [self.fd], [], min(left, 0.05))
        self.queue.clear()
        self.waiting = 0
        if self._flags is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self._flags)
            self._flags = None

    def _write(self, view: memoryview) -> int:
        try:
            return os.write(self.fd, view)
        except BlockingIOError:
            return 0
        except OSError:  # EPIPE: nobody reads any more
            self.alive = False
            return len(view)

    def _blocking_write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except OSError:
                self.alive = False
                return


def enlarge_pipe(fd: int) -> int:
    """Best effort: the pipe's capacity after asking for PIPE_BYTES (never less than it was)."""
    try:
        capacity = int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (OSError, AttributeError):
        return 64 << 10
    if capacity < PIPE_BYTES:
        with contextlib.suppress(OSError):
            capacity = int(fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES))
    return capacity


def pump(
    sources: dict[int, int],
    feed: Callable[[int, memoryview], None],
    tick: Callable[[float], bool],
    poll_seconds: float,
    extra: Callable[[float], list[tuple[int, bytes]]] | None = None,
) -> None:
    """Copy each source fd to its output (fd 1 or 2) until every source is at EOF, or `tick(now)`
    (called every `poll_seconds`) says to stop; every chunk is `feed(output, chunk)` first.
    `extra(now)`, after each round, gives the launcher's own lines: (output, bytes), queued
    behind what the child wrote before them, so they never split a line of its.

    Chunks are views of one buffer, read into again and again (a fresh megabyte per read costs
    more than copying it): whoever keeps some of a chunk copies it."""
    # Created in order, closed in reverse: when fds 1 and 2 share one pipe (2>&1), the flags
    # the first one saw are the ones left behind.
    outputs = {out: Output(out) for out in sorted(set(sources.values()))}
    capacity = min(enlarge_pipe(fd) for fd in sources)
    selector = selectors.DefaultSelector()
    interest: dict[int, int] = {}
    buffer, last_data = bytearray(READ_SIZE), -1.0
    next_tick = time.monotonic() + poll_seconds
    try:
        while sources:
            _update_interest(selector, interest, sources, outputs)
            biggest = 0
            for key, _ in selector.select(poll_seconds):
                fd = int(key.fd)
                if fd in outputs:
                    outputs[fd].flush()
                    continue
                size = os.readv(fd, [buffer])
                if not size:
                    del sources[fd]
                    continue
                biggest = max(biggest, size)
                chunk = memoryview(buffer)[:size]
                feed(sources[fd], chunk)
                outputs[sources[fd]].put(chunk)
            now = time.monotonic()
            if extra is not None:
                for out, data in extra(now):
                    outputs[out].put(data)
            if biggest:
                if _nap_first(now - last_data, biggest, capacity, outputs):
                    time.sleep(NAP_SECONDS)
                last_data = now
            if now >= next_tick:
                next_tick = now + poll_seconds
                if tick(now):
                    break
    finally:
        selector.close()
        for output in reversed(outputs.values()):
            output.close()


def _nap_first(since_last: float, biggest: int, capacity: int, outputs: dict[int, Output]) -> bool:
    """In a flood (data again right after the last, or a big read), nap so that it piles up and is
    copied in fewer pieces; but never when a read was so big that a nap's worth could fill the
    pipe (the child would wait), nor while output waits for the reader (to write it promptly)."""
    flood = since_last < FLOOD_GAP_SECONDS or biggest >= BURST_BYTES
    return flood and biggest < capacity // 4 and not any(output.queue for output in outputs.values())


def _update_interest(
    selector: selectors.BaseSelector,
    interest: dict[int, int],
    sources: dict[int, int],
    outputs: dict[int, Output],
) -> None:
    """Read the sources whose output is not full; watch the outputs that have output waiting."""
    wanted = {fd: selectors.EVENT_READ for fd, out in sources.items() if not outputs[out].full}
    wanted |= {fd: selectors.EVENT_WRITE for fd, output in outputs.items() if output.queue and output.alive}
    for fd in [fd for fd in interest if fd not in wanted]:
        selector.unregister(fd)
        del interest[fd]
    for fd, events in wanted.items():
        if fd not in interest:
            selector.register(fd, events)
            interest[fd] = events
