"""rtclab.ice: ICE servers and policy, TURN credentials, coturn, and the TURN doctor.

``rtclab.ice.doctor(...)`` is imported lazily (the doctor loads pandas only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "Cause": "rtclab.ice.turn_doctor",
    "DoctorReport": "rtclab.ice.turn_doctor",
    "doctor": "rtclab.ice.turn_doctor",
}

__all__ = ["Cause", "DoctorReport", "doctor"]

if TYPE_CHECKING:
    from .turn_doctor import Cause, DoctorReport, doctor

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
