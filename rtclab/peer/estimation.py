"""A bandwidth estimator of the user's choice in place of aiortc's, on one video receiver.

The estimators themselves are pure (:mod:`rtclab.cc`); this module turns aiortc's RTP
packets into :class:`~rtclab.cc.ReceivedPacket`, puts the estimator on the receiver through
:mod:`rtclab._compat` and keeps a broken estimator from breaking the receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._compat.aiortc import replace_remote_bitrate_estimator
from ..cc import BandwidthEstimator, EstimatorFactory, ReceivedPacket, RembFeedback

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ESTIMATE_COLUMNS", "check_estimator_factory", "estimates_frame", "install_estimator"]

log = logging.getLogger(__name__)

ESTIMATE_COLUMNS = ["t", "peer", "remote", "estimator", "estimate_kbps"]


def check_estimator_factory(factory: object) -> EstimatorFactory | None:
    """``factory`` if it can make estimators; a ``TypeError`` that says how to fix it if not.

    The common slip is an instance (``MyEstimator()``): each video receiver needs its own
    estimator, so ``Peer`` takes the class (or any callable that returns a new one).
    """
    if factory is None:
        return None
    if isinstance(factory, BandwidthEstimator) and not isinstance(factory, type):
        name = type(factory).__name__
        raise TypeError(
            f"estimator= takes a class or factory, not an instance: pass {name}, not "
            f"{name}() (each video receiver gets its own estimator; for parameters use "
            f"functools.partial({name}, ...) or a lambda)"
        )
    if not callable(factory):
        raise TypeError(
            f"estimator= must be a class or a function returning an estimator, got {factory!r}"
        )
    return factory  # type: ignore[return-value]


def install_estimator(
    receiver: Any, factory: EstimatorFactory, on_error: Callable[[str], None]
) -> RembFeedback | None:
    """Give the video ``receiver`` a fresh estimator from ``factory`` instead of aiortc's;
    its estimates go to the sender as REMB. None (aiortc's estimator stays) when the factory
    does not give a :class:`~rtclab.cc.BandwidthEstimator` or aiortc has no hook for it.

    An estimator that raises is reported once through ``on_error`` and asked nothing more:
    the receiver keeps receiving, the sender keeps its last target.
    """
    try:
        estimator = factory()
    except Exception as exc:  # runs inside aiortc's track event: never let it escape
        log.exception("bandwidth estimator factory %r failed", factory)
        on_error(f"estimator {factory!r} could not be made: {exc!r}; aiortc's own stays")
        return None
    if not isinstance(estimator, BandwidthEstimator):
        on_error(
            f"estimator factory returned {estimator!r}, which lacks on_packet(packet) and "
            "estimate(now_ms): aiortc's own estimator stays in place"
        )
        return None
    feedback = RembFeedback(estimator)
    failed = False

    def feed(packet: Any, arrival_time_ms: int) -> tuple[int, list[int]] | None:
        nonlocal failed
        if failed:
            return None
        received = ReceivedPacket(
            arrival_time_ms=arrival_time_ms,
            abs_send_time=packet.extensions.abs_send_time,
            size=len(packet.payload) + packet.padding_size,
            sequence_number=packet.sequence_number,
            ssrc=packet.ssrc,
        )
        try:
            return feedback.on_packet(received)
        except Exception as exc:  # a student's estimator must not stop the receiver
            failed = True
            log.exception("bandwidth estimator %s failed", feedback.name)
            on_error(f"estimator {feedback.name} failed and sends no more REMB: {exc!r}")
            return None

    if not replace_remote_bitrate_estimator(receiver, feed):
        return None
    return feedback


def estimates_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of ``(t, peer, remote, estimator, estimate_kbps)`` as a frame, ``t`` in UTC."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)
    frame["t"] = pd.to_datetime(frame["t"], unit="s", utc=True)
    frame["estimate_kbps"] = frame["estimate_kbps"].astype(float)
    return frame  # type: ignore[no-any-return]
