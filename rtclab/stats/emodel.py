"""Pure: an ITU-T G.107 E-model estimate of a voice call's MOS from delay, loss and burstiness.

An *estimate* from transport figures, not a listening test: every parameter the network does
not set keeps its G.107 default (Table 3), so a clean path scores R = 93.2, MOS 4.41, the
narrowband E-model's ceiling. Only the terms a network changes are computed:

- ``Id``, the delay impairment, from the mean one-way mouth-to-ear delay ``T`` (= ``Ta``;
  echo path ``Tr = 2T``): talker echo ``Idte`` (TELR 65 dB), listener echo ``Idle``
  (WEPL 110 dB) and absolute delay ``Idd`` (G.107 clause 7.4, mT = 100 ms, sT = 1);
- ``Ie,eff = Ie + (95 - Ie) · Ppl / (Ppl / BurstR + Bpl)`` (G.107 clause 7.5), with the
  codec's equipment impairment ``Ie`` and packet-loss robustness ``Bpl``;
- MOS from R by G.107 Annex B's cubic.

Opus: G.113 has no narrowband Opus entry that rtclab could check, so Opus is modelled as a
transparent codec with loss concealment: ``Ie = 0`` and ``Bpl = 25.1``, the values ITU-T
G.113 Appendix I (Table I.3) gives G.711 with packet-loss concealment (Appendix I of G.711).
Opus at WebRTC rates is at least as clean on a narrowband scale, and its concealment at
least as good, so the estimate errs low under loss. Pass ``ie``/``bpl`` to use others.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_R",
    "OPUS_BPL",
    "OPUS_IE",
    "burst_ratio",
    "delay_impairment",
    "effective_equipment_impairment",
    "mos",
    "mos_from_r",
    "r_factor",
]

#: R with every G.107 parameter at its default: Ro - Is - Id(T = 0).
DEFAULT_R = 93.2
#: Equipment impairment and packet-loss robustness used for Opus (see the module docstring).
OPUS_IE = 0.0
OPUS_BPL = 25.1

_RO = 94.77  # basic signal-to-noise ratio with the default noise and loudness ratings
_ROE = 94.77  # -1.5 (No - RLR), No = -61.18 dBm0p, RLR = 2 dB
_TELR = 65.0  # talker echo loudness rating, dB
_WEPL = 110.0  # weighted echo path loss, dB


def _idte(t_ms: float) -> float:
    """Talker echo impairment (G.107 7.4), default STMR (no sidetone correction)."""
    terv = (
        _TELR
        - 40.0 * math.log10((1.0 + t_ms / 10.0) / (1.0 + t_ms / 150.0))
        + 6.0 * math.exp(-0.3 * t_ms * t_ms)
    )
    re = 80.0 + 2.5 * (terv - 14.0)
    diff = _ROE - re
    return (diff / 2.0 + math.sqrt(diff * diff / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-t_ms))


def _idle(tr_ms: float) -> float:
    """Listener echo impairment (G.107 7.4)."""
    rle = 10.5 * (_WEPL + 7.0) * math.pow(tr_ms + 1.0, -0.25)
    diff = _RO - rle
    return diff / 2.0 + math.sqrt(diff * diff / 4.0 + 169.0)


def _idd(ta_ms: float) -> float:
    """Absolute delay impairment (G.107 7.4): none up to 100 ms."""
    if ta_ms <= 100.0:
        return 0.0
    x = math.log10(ta_ms / 100.0) / math.log10(2.0)
    return 25.0 * (math.pow(1.0 + x**6, 1 / 6) - 3.0 * math.pow(1.0 + (x / 3.0) ** 6, 1 / 6) + 2.0)


def delay_impairment(one_way_delay_ms: float) -> float:
    """``Id(T) - Id(0)``: what a one-way delay of ``one_way_delay_ms`` takes off
    :data:`DEFAULT_R` (the default R already holds the small listener-echo term at T = 0)."""
    t = max(0.0, float(one_way_delay_ms))
    return _idte(t) + _idle(2.0 * t) + _idd(t) - _idle(0.0)


def effective_equipment_impairment(
    loss_pct: float, burst_r: float = 1.0, *, ie: float = OPUS_IE, bpl: float = OPUS_BPL
) -> float:
    """``Ie,eff`` for ``loss_pct`` % packet loss; ``burst_r`` 1 for random loss, > 1 when
    losses come in bursts (G.107 7.5)."""
    ppl = min(max(float(loss_pct), 0.0), 100.0)
    burst = max(float(burst_r), 1e-9)
    return ie + (95.0 - ie) * ppl / (ppl / burst + bpl)


def r_factor(
    one_way_delay_ms: float,
    loss_pct: float,
    burst_r: float = 1.0,
    *,
    ie: float = OPUS_IE,
    bpl: float = OPUS_BPL,
    advantage: float = 0.0,
) -> float:
    """The transmission rating R (0-100) for a call over this path."""
    r = (
        DEFAULT_R
        - delay_impairment(one_way_delay_ms)
        - effective_equipment_impairment(loss_pct, burst_r, ie=ie, bpl=bpl)
        + advantage
    )
    return min(max(r, 0.0), 100.0)


def mos_from_r(r: float) -> float:
    """MOS (1-4.5) from R, G.107 Annex B: ``1 + 0.035 R + R (R - 60)(100 - R) 7e-6``."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def mos(one_way_delay_ms: float, loss_pct: float, burst_r: float = 1.0, **codec: float) -> float:
    """The E-model MOS estimate: :func:`r_factor` (``codec``: its ``ie``, ``bpl``,
    ``advantage``) then :func:`mos_from_r`."""
    return mos_from_r(r_factor(one_way_delay_ms, loss_pct, burst_r, **codec))


def burst_ratio(bursts: float, packets_lost: float, packets_received: float) -> float:
    """G.107's BurstR from counts over an interval: ``bursts`` gaps in the sequence numbers
    holding ``packets_lost`` packets, and ``packets_received``. A two-state Markov model
    (p = P(loss after a received packet) = bursts / received, q = P(received after a loss)
    = bursts / lost) gives ``BurstR = 1 / (p + q)``: ~1 for random loss, more when
    losses cluster. Never below 1 (losses more scattered than random are scored as
    random), and 1 when nothing was lost."""
    if bursts <= 0 or packets_lost <= 0 or packets_received <= 0:
        return 1.0
    p = min(bursts / packets_received, 1.0)
    q = min(bursts / packets_lost, 1.0)
    return max(1.0, 1.0 / (p + q))
