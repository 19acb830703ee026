"""A host namespace of a :class:`~rtclab.net.netns.NetnsNetwork`: where it is and how to
run a command inside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..nfqueue import NamespaceImpairment

__all__ = ["NetnsHost"]


@dataclass
class NetnsHost:
    """A host namespace (behind ``router`` or on the public bridge)."""

    name: str
    namespace: str
    address: str
    preset: str
    router: str | None = None
    public_ip: str | None = None
    firewall: str | None = None
    impairment: NamespaceImpairment | None = None

    def exec_args(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]
