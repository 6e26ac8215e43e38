"""Helpers shared by the two backends' streaming watches (HTTP chunked responses).

A blocked read on a watch stream does not notice a `threading.Event`; closing the response from
another thread does not wake it either on Linux. Shutting the socket down does (urllib3's
`HTTPResponse.shutdown`), so a small closer thread waits for the stop event and shuts the
stream, and the reader sees end-of-stream.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["closing_on_stop"]


@contextlib.contextmanager
def closing_on_stop(
    stop: threading.Event | None, shutdown: Callable[[], None], *, name: str
) -> Iterator[None]:
    """Inside, `shutdown()` runs (once, in a helper thread) as soon as `stop` is set."""
    if stop is None:
        yield
        return
    done = threading.Event()

    def closer() -> None:
        while not done.is_set():
            if stop.wait(0.2):
                if not done.is_set():
                    with contextlib.suppress(OSError):
                        shutdown()
                return

    thread = threading.Thread(target=closer, name=f"{name}-closer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()

