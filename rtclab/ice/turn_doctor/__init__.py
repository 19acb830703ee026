"""The TURN doctor: check STUN/TURN servers step by step and say, in words, what is wrong.

``report = await doctor(["turn:turn.example.org?transport=udp"], secret=...)`` returns a
:class:`DoctorReport` (``frame``, ``verdict``, ``ok``); ``rtclab turn-check`` prints it.
Pure parts (:mod:`.causes`, :mod:`.report`) apart from the I/O (:mod:`.run`, :mod:`.wire`).
"""

from .causes import Cause, IceUrl
from .report import DoctorReport, Step
from .run import DEFAULT_TIMEOUT, doctor

__all__ = ["DEFAULT_TIMEOUT", "Cause", "DoctorReport", "IceUrl", "Step", "doctor"]
