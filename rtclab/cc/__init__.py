"""rtclab.cc: congestion control — receiver-side bandwidth estimators, sans-I/O.

A :class:`BandwidthEstimator` is fed every RTP packet a video receiver gets and asked for
an estimate; ``Peer(estimator=...)`` puts one in place of aiortc's own, so its estimate
goes to the sender as REMB and sets the encoder's target bitrate. Two ship with rtclab:
:class:`DelayBasedEstimator` (aiortc's default, wrapped) and :class:`LossBasedAimd`.
"""

from .delay import DelayBasedEstimator
from .estimator import (
    BandwidthEstimator,
    EstimatorFactory,
    ReceivedPacket,
    RembFeedback,
    load_estimator,
)
from .loss import LossBasedAimd, LossWindow

__all__ = [
    "BandwidthEstimator",
    "DelayBasedEstimator",
    "EstimatorFactory",
    "LossBasedAimd",
    "LossWindow",
    "ReceivedPacket",
    "RembFeedback",
    "load_estimator",
]
