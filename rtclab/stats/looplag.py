"""Event-loop lag: how late a periodic timer fires — the number a frozen kernel shows first."""

from __future__ import annotations

import asyncio
import contextlib
import statistics


class LoopLagMonitor:
    """Samples how late ``asyncio.sleep(interval)`` wakes up, in milliseconds.

    Use as ``async with LoopLagMonitor() as lag: ...`` then read ``lag.p99_ms`` /
    ``lag.max_ms``. Lateness is what every other coroutine in the loop waits extra too.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags_ms.append(max(0.0, (loop.time() - due) * 1000))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def percentile_ms(self, q: float) -> float:
        if not self.lags_ms:
            return 0.0
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def max_ms(self) -> float:
        return max(self.lags_ms, default=0.0)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.lags_ms) if self.lags_ms else 0.0
