"""NAT binding timeouts on the emulated network: a mapping lifetime shorter than the consent
interval breaks an idle call, a longer one does not; a NAT reboot is noticed and recovered."""

from __future__ import annotations

import math

import pytest

from rtclab.experiments.binding_timeouts import BINDING_COLUMNS, binding_timeouts


async def test_short_lifetime_breaks_an_idle_call_and_a_long_one_does_not() -> None:
    result = await binding_timeouts([2, 30], ["port-restricted-cone"], reboot=False,
                                    idle_s=10.0, progress=False)  # fmt: skip
    frame = result.frame
    assert list(frame.columns) == BINDING_COLUMNS and len(frame) == 2
    short, long = (frame[frame["lifetime_s"] == v].iloc[0] for v in (2.0, 30.0))
    assert short["path"] == long["path"] == "direct"
    # consent checks every 4-6 s: the 2 s mappings are gone by the first one
    assert not short["survived"] and 2.0 < short["broke_s"] < 7.0, short.to_dict()
    assert long["survived"] and math.isnan(long["broke_s"]), long.to_dict()


async def test_a_nat_reboot_is_noticed_and_recovered_from() -> None:
    result = await binding_timeouts([120], ["symmetric"], idle=False, progress=False)
    row = result.frame.iloc[0]
    assert row["scenario"] == "reboot" and not row["survived"], row.to_dict()
    # the recovery loop says lost after 3 s of silence, rebuilds 2 s later
    assert 0.5 < row["noticed_s"] <= 3.5 and row["noticed_s"] < row["recovered_s"] < 12.0
    assert len(result.figure.data) == 3


async def test_open_has_no_mappings_to_lose() -> None:
    with pytest.raises(ValueError, match="NAT preset"):
        await binding_timeouts([2], ["open"], progress=False)
