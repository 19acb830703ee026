"""What the kernel and a worker say to each other, beside the row protocol (:mod:`rtclab.wire`).

Pure: messages as dicts, one JSON line each. The kernel sends commands
(``{"op": "create"|"call"|"preview"|"frame"|"close", "id": n, ...}``); a worker answers
each one (``{"reply": n, "result": ...}`` or ``{"reply": n, "error": {"type", "message"}}``)
and streams, unasked, its ``hello``, events, rows, frames, previews, and its peers'
candidates (when they change) and bandwidth estimates (new ones).
"""

from __future__ import annotations

import base64
import dataclasses
import fractions
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..ice.config import IceConfig, IceServer
from ..peer.media import plane_pixels
from ..peer.resilience import Resilience

__all__ = [
    "CALLS",
    "MAX_PREVIEW_FPS",
    "RemoteError",
    "error_reply",
    "frame_from_wire",
    "frame_to_wire",
    "ice_from_dict",
    "ice_to_dict",
    "options_from_wire",
    "options_to_wire",
    "raise_error",
]

#: the Peer methods a worker runs on the kernel's behalf (nothing else is callable)
CALLS = frozenset(
    {
        "join",
        "leave",
        "close",
        "wait_connected",
        "send_chat",
        "send_cursor",
        "switch_video",
        "set_max_bitrate",
        "set_video_format",
        "set_video_source",
        "set_muted",
        "record",
    }
)
MAX_PREVIEW_FPS = 5.0
_ERRORS: dict[str, type[Exception]] = {
    e.__name__: e
    for e in (
        ConnectionError,
        TimeoutError,
        ValueError,
        RuntimeError,
        LookupError,
        KeyError,
        TypeError,
        OSError,
    )
}


class RemoteError(RuntimeError):
    """An error raised in a worker whose type the kernel does not rebuild."""


def error_reply(call_id: int, exc: BaseException) -> dict[str, Any]:
    return {"reply": call_id, "error": {"type": type(exc).__name__, "message": str(exc)}}


def raise_error(error: Mapping[str, Any]) -> None:
    """Raise the worker's error in the kernel as its own type when it is a common one
    (``ConnectionError`` from ``wait_connected`` stays a ``ConnectionError``)."""
    kind, message = str(error.get("type")), str(error.get("message"))
    cls = _ERRORS.get(kind)
    if cls is None:
        raise RemoteError(f"{kind}: {message}")
    raise cls(message)


def ice_to_dict(ice: IceConfig) -> dict[str, Any]:
    out = dataclasses.asdict(ice)
    out["ice_servers"] = [s.to_dict() for s in ice.ice_servers]
    return out


def ice_from_dict(data: Mapping[str, Any]) -> IceConfig:
    fields = dict(data)
    servers = tuple(
        IceServer(s["urls"], s.get("username"), s.get("credential"))
        for s in fields.pop("ice_servers", ())
    )
    interfaces = fields.pop("interfaces", None)
    return IceConfig(
        ice_servers=servers,
        interfaces=None if interfaces is None else tuple(interfaces),
        **fields,
    )


def _estimator_spec(factory: Any) -> str:
    """``MODULE:NAME`` of an estimator class or function (what crosses the process line)."""
    if isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or not name or "<" in name:
        raise ValueError(
            f"estimator {factory!r} cannot go to a worker: give a class importable by "
            "name (or 'MODULE:NAME'), or create the peer in the kernel with worker='kernel'"
        )
    return f"{module}:{name}"


def options_to_wire(options: Mapping[str, Any]) -> dict[str, Any]:
    """``Peer`` keyword options as JSON; what cannot cross to another process is refused
    with the way out (an emulated ``network`` lives in the kernel's loop)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "network" and value is not None:
            raise ValueError(
                "a peer on an emulated network runs in the kernel: pass worker='kernel'"
            )
        if key == "ice" and value is not None:
            out[key] = ice_to_dict(value)
        elif key == "resilience" and value is not None:
            out[key] = dataclasses.asdict(value)
        elif key == "estimator" and value is not None:
            out[key] = _estimator_spec(value)
        elif isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
        elif isinstance(value, Path):
            out[key] = str(value)
        else:
            raise ValueError(f"peer option {key}={value!r} cannot go to a worker process")
    return out


def options_from_wire(options: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`options_to_wire`, in the worker."""
    out = dict(options)
    if out.get("ice") is not None:
        out["ice"] = ice_from_dict(out["ice"])
    if out.get("resilience") is not None:
        data = dict(out["resilience"])
        data["backoff"] = tuple(data.get("backoff", ()))
        out["resilience"] = Resilience(**data)
    if out.get("estimator") is not None:
        from ..cc import load_estimator

        out["estimator"] = load_estimator(out["estimator"])
    return out


def frame_to_wire(frame: av.VideoFrame) -> dict[str, Any]:
    """A decoded video frame as JSON, pixel for pixel (yuv420p planes, base64): the
    kernel's copy carries the same frame tag and luma as the worker's."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    planes = [base64.b64encode(plane_pixels(p).tobytes()).decode() for p in frame.planes]
    time_base = None if frame.time_base is None else str(frame.time_base)
    return {"width": frame.width, "height": frame.height, "pts": frame.pts,
            "time_base": time_base, "planes": planes}  # fmt: skip


def frame_from_wire(data: Mapping[str, Any]) -> av.VideoFrame:
    """The inverse of :func:`frame_to_wire`."""
    frame = av.VideoFrame(int(data["width"]), int(data["height"]), "yuv420p")
    for plane, text in zip(frame.planes, data["planes"], strict=True):
        pixels = plane_pixels(plane)
        pixels[:] = np.frombuffer(base64.b64decode(text), np.uint8).reshape(pixels.shape)
    frame.pts = data.get("pts")
    if data.get("time_base"):
        frame.time_base = fractions.Fraction(data["time_base"])
    return frame
