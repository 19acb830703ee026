"""Scale-out: rooms shared by several server processes through Redis (optional ``redis`` extra).

Redis holds the registry (one hash per room: userId -> process) and carries two kinds of
pub/sub traffic:

- ``<prefix>:events``: every join and leave, published *inside* the Lua script that changes
  the registry, with a global sequence number. Redis runs scripts one at a time, so every
  process sees membership changes in one order, and each keeps a replica of all rooms
  (remote members are proxies in its :class:`~.hub.Hub`). A process completes its own
  client's join when its own event comes back, so ``room-joined``'s peer list is exactly
  the members before it in that order.
- ``<prefix>:node:<id>``: relayed frames for one process, already spliced (``from`` set by
  the sender's process); the receiver only looks up the local connection and writes.

Duplicate userIds and the room size cap are settled atomically in the join script.
Each process keeps a ``<prefix>:alive:<id>`` key with a TTL; members of a process that
died without leaving are evicted (with ``peer-left``) by the next join under their name
and by a periodic sweep. Redis is imported lazily so the extra stays optional.

The cluster talks to its server only through :class:`ClusterHost`, a few public calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from typing import Any, Final, Protocol

from .hub import Recipient
from .protocol import ErrorCode

__all__ = ["ClusterHost", "RedisCluster"]

logger = logging.getLogger("rtclab.signaling.cluster")

_JOIN: Final = """
-- KEYS: room hash, sequence, set of rooms. ARGV: room, user, node, cap, alive prefix, channel
local owner = redis.call('HGET', KEYS[1], ARGV[2])
if owner then
  if redis.call('EXISTS', ARGV[5] .. owner) == 1 then return {'duplicate-user'} end
  redis.call('HDEL', KEYS[1], ARGV[2])  -- left behind by a dead process: evict it
  local s = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[6], cjson.encode({s, 'leave', ARGV[1], ARGV[2], owner}))
end
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('HLEN', KEYS[1]) >= cap then return {'room-full'} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
local s = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[6], cjson.encode({s, 'join', ARGV[1], ARGV[2], ARGV[3]}))
return {'ok', s}
"""

_LEAVE: Final = """
-- KEYS: room hash, sequence, set of rooms. ARGV: room, user, node, channel
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
local s = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], cjson.encode({s, 'leave', ARGV[1], ARGV[2], ARGV[3]}))
return s
"""

_SNAPSHOT: Final = """
-- KEYS: sequence, set of rooms. ARGV: room key prefix. -> {seq, room, user, node, ...}
local out = {redis.call('GET', KEYS[1]) or '0'}
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local flat = redis.call('HGETALL', ARGV[1] .. room)
  for i = 1, #flat, 2 do
    out[#out + 1] = room; out[#out + 1] = flat[i]; out[#out + 1] = flat[i + 1]
  end
end
return out
"""

_SWEEP: Final = """
-- KEYS: sequence, set of rooms. ARGV: room key prefix, alive prefix, channel
local evicted = 0
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[1] .. room
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    if redis.call('EXISTS', ARGV[2] .. flat[i + 1]) == 0 then
      redis.call('HDEL', key, flat[i])
      local s = redis.call('INCR', KEYS[1])
      redis.call('PUBLISH', ARGV[3], cjson.encode({s, 'leave', room, flat[i], flat[i + 1]}))
      evicted = evicted + 1
    end
  end
  if redis.call('HLEN', key) == 0 then redis.call('SREM', KEYS[2], room) end
end
return evicted
"""


class ClusterHost(Protocol):
    """What a cluster node needs from its server: settle the joins it asked the registry
    about, mirror other processes' members, deliver frames they relay to local members."""

    @property
    def max_room_size(self) -> int | None: ...

    def member(self, room_id: str, user_id: str) -> Recipient | None:
        """The member (local or remote) of that name, if any."""
        ...

    def add_remote(self, member: Recipient, room_id: str, user_id: str) -> None: ...

    def remove_remote(self, room_id: str, user_id: str) -> None: ...

    def deliver(self, room_id: str, user_id: str, frame: bytes) -> None:
        """A frame relayed by another process to a local member (dropped if it left)."""
        ...

    def seated(self, conn: Recipient, room_id: str, user_id: str) -> None:
        """The registry seated local ``conn`` (asked by :meth:`RedisCluster.join`)."""
        ...

    def refused(self, conn: Recipient, code: ErrorCode, text: str) -> None:
        """The registry refused that join, or could not be asked."""
        ...


class _Remote:
    """A member connected to another process: relays to it are published to that process."""

    __slots__ = ("cluster", "head", "label", "node")

    def __init__(self, cluster: RedisCluster, node: str, room_id: str, user_id: str) -> None:
        self.cluster = cluster
        self.node = node
        self.label = f"{user_id}@{node}"
        # JSON has no raw newline, so "<json header>\n<frame>" splits unambiguously
        self.head = json.dumps([room_id, user_id]).encode() + b"\n"

    def send(self, payload: bytes) -> None:
        self.cluster.publish(self.node, self.head + payload)


class RedisCluster:
    """One server process's link to the shared registry; created by the signaling server
    when it gets ``redis_url``."""

    def __init__(
        self,
        host: ClusterHost,
        url: str,
        *,
        prefix: str = "rtclab:signal",
        alive_ttl: float = 15.0,
    ) -> None:
        self.host = host
        self.url = url
        self.prefix = prefix
        self.alive_ttl = alive_ttl
        self.node = uuid.uuid4().hex[:12]
        self._events = f"{prefix}:events"
        self._inbox = f"{prefix}:node:{self.node}"
        self._seq_key = f"{prefix}:seq"
        self._rooms_key = f"{prefix}:rooms"
        self._room_prefix = f"{prefix}:room:"
        self._alive_prefix = f"{prefix}:alive:"
        self._seq = 0
        self._ops: deque[tuple[Any, ...]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._joining: dict[tuple[str, str], Recipient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None
        self._pubsub: Any = None
        self._scripts: dict[str, Any] = {}

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise RuntimeError(
                "scale-out through Redis needs the redis package: pip install 'rtclab[redis]'"
            ) from None
        client = aioredis.from_url(self.url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise RuntimeError(f"cannot reach Redis at {self.url}: {exc}") from exc
        self._redis = client
        self._scripts = {
            name: client.register_script(src)
            for name, src in (
                ("join", _JOIN),
                ("leave", _LEAVE),
                ("snapshot", _SNAPSHOT),
                ("sweep", _SWEEP),
            )
        }
        await self._mark_alive()
        self._pubsub = client.pubsub()
        # Subscribe before the snapshot: every event after it is then certain to arrive.
        await self._pubsub.subscribe(self._events, self._inbox)
        snapshot = await self._scripts["snapshot"](
            keys=[self._seq_key, self._rooms_key], args=[self._room_prefix]
        )
        self._seq = int(snapshot[0])
        for i in range(1, len(snapshot), 3):
            room, user, node = (x.decode() for x in snapshot[i : i + 3])
            self.host.add_remote(_Remote(self, node, room, user), room, user)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read()),
            loop.create_task(self._write()),
            loop.create_task(self._keep_alive()),
        ]
        logger.info("signaling node %s joined the Redis cluster at %s", self.node, self.url)

    async def stop(self) -> None:
        """Finish queued leaves (bounded), then disconnect; other processes then see this
        one's members leave, or the sweep evicts them once the alive key expires."""
        if self._tasks:
            # The writer ends by itself once the queue is empty: cancelling it mid-command
            # is unreliable (redis-py may swallow the cancellation while it cleans up).
            self._closing = True
            self._wake.set()
            await asyncio.wait(self._tasks[1:2], timeout=2.0)
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks, timeout=2.0)
            self._tasks = []
        with contextlib.suppress(Exception):
            await self._redis.delete(self._alive_prefix + self.node)
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self._redis.aclose()

    # ---------------------------------------------------------------- called by the server

    def join(self, conn: Recipient, room_id: str, user_id: str) -> None:
        """Ask the registry to seat ``conn``; the host hears back through
        :meth:`ClusterHost.seated` (when our own event arrives) or :meth:`ClusterHost.refused`."""
        self._push(("join", conn, room_id, user_id))

    def leave(self, room_id: str, user_id: str) -> None:
        self._push(("leave", room_id, user_id))

    def publish(self, node: str, data: bytes) -> None:
        self._push(("pub", f"{self.prefix}:node:{node}", data))

    # ---------------------------------------------------------------- internals

    def _push(self, op: tuple[Any, ...]) -> None:
        self._ops.append(op)
        self._wake.set()

    async def _write(self) -> None:
        """One writer, so registry changes and relays reach Redis in the order they were
        made; consecutive relays go out as one pipeline."""
        ops = self._ops
        while True:
            if not ops:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            while ops:
                op = ops[0]
                try:
                    if op[0] == "pub":
                        pipe = self._redis.pipeline(transaction=False)
                        while ops and ops[0][0] == "pub":
                            _, channel, data = ops.popleft()
                            pipe.publish(channel, data)
                        await pipe.execute()
                        continue
                    ops.popleft()
                    if op[0] == "join":
                        await self._join(op[1], op[2], op[3])
                    else:
                        await self._leave(op[1], op[2])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("Redis operation %s failed: %s", op[0], exc)
                    if op[0] == "join":
                        self._joining.pop((op[2], op[3]), None)
                        self.host.refused(op[1], "unavailable", "the room registry is unavailable")

    async def _join(self, conn: Recipient, room_id: str, user_id: str) -> None:
        key = (room_id, user_id)
        self._joining[key] = conn
        result = await self._scripts["join"](
            keys=[self._room_prefix + room_id, self._seq_key, self._rooms_key],
            args=[
                room_id,
                user_id,
                self.node,
                self.host.max_room_size or 0,
                self._alive_prefix,
                self._events,
            ],
        )
        status = result[0].decode()
        if status != "ok":
            self._joining.pop(key, None)
            text = (
                f"user {user_id!r} is already in room {room_id!r}"
                if status == "duplicate-user"
                else f"room {room_id!r} is full"
            )
            self.host.refused(conn, status, text)  # type: ignore[arg-type]
        # on "ok", the join completes when our own event arrives (see _on_event)

    async def _leave(self, room_id: str, user_id: str) -> None:
        await self._scripts["leave"](
            keys=[self._room_prefix + room_id, self._seq_key, self._rooms_key],
            args=[room_id, user_id, self.node, self._events],
        )

    async def _mark_alive(self) -> None:
        await self._redis.set(self._alive_prefix + self.node, b"1", px=int(self.alive_ttl * 1000))

    async def _keep_alive(self) -> None:
        sweeps = 0
        while True:
            await asyncio.sleep(self.alive_ttl / 3)
            try:
                await self._mark_alive()
                sweeps += 1
                if sweeps % 3 == 0:
                    await self._scripts["sweep"](
                        keys=[self._seq_key, self._rooms_key],
                        args=[self._room_prefix, self._alive_prefix, self._events],
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("Redis keep-alive failed: %s", exc)

    async def _read(self) -> None:
        pubsub = self._pubsub
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.error("Redis subscription failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                channel = message["channel"].decode()
                if channel == self._inbox:
                    self._on_frame(message["data"])
                else:
                    self._on_event(json.loads(message["data"]))
            except Exception:
                logger.exception("bad message from Redis on %r", message.get("channel"))

    def _on_frame(self, data: bytes) -> None:
        head, _, frame = data.partition(b"\n")
        room_id, user_id = json.loads(head)
        self.host.deliver(room_id, user_id, frame)

    def _on_event(self, event: list[Any]) -> None:
        seq, op, room_id, user_id, node = event
        if seq <= self._seq:
            return  # already in the snapshot
        self._seq = seq
        host = self.host
        if node == self.node:
            if op == "join":
                conn = self._joining.pop((room_id, user_id), None)
                if conn is not None:
                    host.seated(conn, room_id, user_id)
            return  # our own leaves were applied locally at once
        if op == "join":
            host.add_remote(_Remote(self, node, room_id, user_id), room_id, user_id)
        else:
            current = host.member(room_id, user_id)
            if isinstance(current, _Remote) and current.node == node:
                host.remove_remote(room_id, user_id)
