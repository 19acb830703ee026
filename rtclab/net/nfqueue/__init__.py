"""Link impairment for a network namespace in userspace, through NFQUEUE.

This kernel has no ``netem``, so the namespace backend cannot ask the kernel to delay or
drop packets. Instead iptables hands the namespace's UDP packets to a queue, and a small
process inside the namespace decides each packet's fate with the same :class:`LinkState`
the emulated network uses.

Modules: :mod:`.codec` (the nfnetlink_queue wire format, pure), :mod:`.worker` (the process
in the namespace: socket, per-direction model, verdicts), :mod:`.control` (the parent side:
:func:`impair_namespace` starts the worker and installs the iptables rules).
"""

from .codec import NF_ACCEPT, NF_DROP, NfqueueError, QueuedPacket
from .control import NamespaceImpairment, impair_namespace
from .worker import NfqueueSocket, main

__all__ = [
    "NF_ACCEPT",
    "NF_DROP",
    "NamespaceImpairment",
    "NfqueueError",
    "NfqueueSocket",
    "QueuedPacket",
    "impair_namespace",
    "main",
]
