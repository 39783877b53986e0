"""A private asyncio event loop in a daemon thread, behind a synchronous API: the SSH transport (asyncssh) and the
iOS transport (pymobiledevice3) are asyncio libraries, while a Transport is called synchronously."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


class EventLoopThread:
    """An asyncio loop in a daemon thread; `call` runs a coroutine there and waits for it from this thread."""

    def __init__(self, name: str = "ssh-transport") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(self, coro: Awaitable[_T], timeout: float) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        except BaseException:  # our timeout, Ctrl-C: the coroutine must not go on behind our back
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()
