"""The doctor's result: one row per step, a one-line verdict, a table for terminals and a
coloured HTML table for notebooks. Pure: built from :class:`Step` records, no I/O."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .causes import FIXES, Cause

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "DoctorReport", "Step"]

#: The frame's columns, in order.
COLUMNS = ("step", "url", "transport", "ok", "ms", "detail", "fix", "cause")

#: What each URL's last step must be for the URL to count as working.
FINAL_STEP = {"stun": "binding", "turn": "relay"}


@dataclass(frozen=True)
class Step:
    """One checked step: ``ok`` with what was seen, or a named ``cause`` with its fix."""

    step: str
    url: str
    transport: str
    ok: bool
    ms: float
    detail: str
    cause: Cause | None = None
    fix: str = ""

    @classmethod
    def failed(
        cls, step: str, url: str, transport: str, ms: float, cause: Cause, detail: str
    ) -> Step:
        return cls(step, url, transport, False, ms, detail, cause, FIXES[cause])

    @property
    def status(self) -> str:
        """``ok`` / ``warn`` (passed with a caveat in ``fix``) / ``fail``."""
        if not self.ok:
            return "fail"
        return "warn" if self.fix else "ok"


@dataclass
class DoctorReport:
    """What :func:`~rtclab.ice.doctor` found: ``frame``, ``verdict``, ``ok``.

    ``ok`` is True when every URL passed its last step (a STUN URL its binding, a TURN URL
    the relay echo); ``working`` lists the URLs that did, in the order given.
    """

    steps: list[Step]
    urls: list[str]
    kinds: dict[str, str] = field(default_factory=dict)  # url -> "stun" | "turn"

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {
                "step": s.step, "url": s.url, "transport": s.transport, "ok": s.ok,
                "ms": round(s.ms, 1), "detail": s.detail, "fix": s.fix,
                "cause": None if s.cause is None else s.cause.value,
            }
            for s in self.steps
        ]  # fmt: skip
        frame: pd.DataFrame = pd.DataFrame(rows, columns=list(COLUMNS))
        return frame

    def works(self, url: str) -> bool:
        final = FINAL_STEP[self.kinds.get(url, "turn")]
        mine = [s for s in self.steps if s.url == url]
        return bool(mine) and all(s.ok for s in mine) and any(s.step == final for s in mine)

    @property
    def working(self) -> list[str]:
        return [url for url in self.urls if self.works(url)]

    @property
    def ok(self) -> bool:
        return bool(self.urls) and len(self.working) == len(self.urls)

    def causes(self, url: str | None = None) -> list[Cause]:
        """The named causes of failed steps (of one URL, or all), in step order."""
        return [
            s.cause
            for s in self.steps
            if s.cause is not None and not s.ok and (url is None or s.url == url)
        ]

    def cause(self, url: str) -> Cause | None:
        """The first failure's cause for ``url`` (None when it works)."""
        found = self.causes(url)
        return found[0] if found else None

    @property
    def verdict(self) -> str:
        """One line: what works, and for what does not, the first named cause."""
        if not self.urls:
            return "nothing checked: give at least one stun:/turn:/turns: URL"
        if self.ok:
            what = "relay" if any(k == "turn" for k in self.kinds.values()) else "answer"
            return f"all {len(self.urls)} URL(s) {what}: " + ", ".join(self.urls)
        broken = [
            f"{url}: {self.cause(url) or 'incomplete'}" for url in self.urls if not self.works(url)
        ]
        working = self.working
        if not working:
            return "nothing works — " + "; ".join(broken)
        return f"{len(working)} of {len(self.urls)} work ({', '.join(working)}) — " + "; ".join(
            broken
        )

    # ---------------------------------------------------------------- views

    def table(self, width: int = 90) -> str:
        """A plain-text table (what ``rtclab turn-check`` prints)."""
        lines = [f"{'':3}{'step':<12}{'transport':<10}{'ms':>8}  detail"]
        current = None
        for s in self.steps:
            if s.url != current:
                current = s.url
                lines.append(current)
            mark = {"ok": "ok", "warn": "!!", "fail": "XX"}[s.status]
            detail = s.detail if len(s.detail) <= width else s.detail[: width - 1] + "…"
            lines.append(f"{mark:<3}{s.step:<12}{s.transport:<10}{s.ms:>8.1f}  {detail}")
            if s.cause is not None and not s.ok:
                lines.append(f"{'':25}cause: {s.cause.value}")
            if s.fix:
                lines.append(f"{'':25}fix: {s.fix}")
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colours = {"ok": "#d8f5d0", "warn": "#fff2c2", "fail": "#ffd6d2"}
        head = "".join(f"<th>{name}</th>" for name in COLUMNS)
        body: list[str] = []
        for s in self.steps:
            cells = [
                s.step, s.url, s.transport, "✔" if s.ok else "✘", f"{s.ms:.1f}", s.detail,
                s.fix, "" if s.cause is None else s.cause.value,
            ]  # fmt: skip
            tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            body.append(
                f'<tr class="rtclab-doctor-{s.status}" '
                f'style="background:{colours[s.status]}">{tds}</tr>'
            )
        verdict_colour = colours["ok" if self.ok else "fail"]
        return (
            f'<div class="rtclab-doctor"><p style="background:{verdict_colour};padding:4px">'
            f"<b>verdict:</b> {html.escape(self.verdict)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        return f"<DoctorReport {len(self.urls)} URL(s), {len(self.steps)} steps: {self.verdict}>"


def merge(reports: Sequence[DoctorReport]) -> DoctorReport:
    """One report from per-URL reports, URLs in order."""
    out = DoctorReport(steps=[], urls=[])
    for report in reports:
        out.steps.extend(report.steps)
        out.urls.extend(report.urls)
        out.kinds.update(report.kinds)
    return out
