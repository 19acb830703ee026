"""rtclab.ice: ICE servers and policy, TURN credentials, coturn, and the TURN doctor.

``rtclab.ice.doctor(...)`` is imported lazily (the doctor loads pandas only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = ["Cause", "DoctorReport", "doctor"]

if TYPE_CHECKING:
    from .turn_doctor import Cause, DoctorReport, doctor

# every public name is the doctor's
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "rtclab.ice.turn_doctor"))
