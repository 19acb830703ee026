"""The CPU budget that keeps PSNR/SSIM scoring to a share of a core (pure logic)."""

from __future__ import annotations

from rtclab.peer.scoring import CpuBudget


def test_budget_refills_at_its_share_and_one_job_may_overdraw_it() -> None:
    budget = CpuBudget(0.05, burst=0.2, now=0.0)
    assert budget.allows(0.0)
    budget.spend(0.15, 0.0)
    assert budget.allows(0.0)  # 0.05 s left
    budget.spend(0.1, 0.0)  # overdrawn by 0.05 s: nothing more until it refills
    assert not budget.allows(0.5)
    assert budget.allows(1.1)  # 0.05 s a second: back above zero after 1 s
    assert budget.allows(100.0)
    budget.spend(0.2, 100.0)  # refilled only up to burst, however long it rested
    assert not budget.allows(100.0)
