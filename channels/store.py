"""Channel values in Redis: atomic server-side operations and the update message.

Per channel ``name`` (keys are per database):

* ``channels:value:<name>`` hash: ``v`` encoded value, ``n`` version, ``w`` who set it,
  ``t`` Redis server time of the set in microseconds.
* ``channels:holders:<name>`` sorted set: one member per holding process, scored by the
  Redis server time (ms) at which its lease ends.
* ``channels:clock``: the version counter. Versions come from this one counter, so
  they increase across clears and never depend on any client's clock.
* ``channels:epoch``: a random token naming the data of this database. A process
  that reconnects and finds another token (Redis restarted without persistence, or
  was flushed) forgets the versions it knew and resynchronises (see ``Link``).

Both keys expire (``PEXPIREAT``) when the longest lease ends, so a value whose holders
all died disappears by itself. A value written while nobody holds the channel lives
for one lease. Every change publishes an update message on
``channels:<db>:update:<name>``::

    b"<kind> <version> <previous version> <time us> <len(who)> <who><value bytes>"

``kind`` is ``s`` (set) or ``c`` (cleared). A receiver whose known version is not the
message's *previous version* has missed something and re-reads the value.

Every method makes one round trip and may raise redis-py errors; callers translate.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import redis

from .connection import Namespace

__all__ = ["Snapshot", "Update", "Store", "parse_update"]

_NOW = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local function publish(chan, kind, ver, prev, who, value)
  redis.call('PUBLISH', chan, kind .. ' ' .. string.format('%.0f', ver) .. ' '
    .. string.format('%.0f', prev) .. ' ' .. now_us .. ' ' .. #who .. ' ' .. who .. value)
end
local function extend(vk, hk)
  local last = redis.call('ZRANGE', hk, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', hk, last[2])
    redis.call('PEXPIREAT', vk, last[2])
  end
end
"""

# KEYS: value, holders, clock. ARGV: member, lease_ms, has_default, default, who, channel
_ACQUIRE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  local ver = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 'n', ver, 'w', ARGV[5], 't', now_us)
  publish(ARGV[6], 's', ver, 0, ARGV[5], ARGV[4])
end
extend(KEYS[1], KEYS[2])
local r = redis.call('HMGET', KEYS[1], 'v', 'n', 'w', 't')
r[5] = redis.call('GET', KEYS[3])
return r
"""

# KEYS: value, holders, clock. ARGV: value, who, orphan_lease_ms, channel
_SET = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local prev = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local ver = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'n', ver, 'w', ARGV[2], 't', now_us)
if redis.call('EXISTS', KEYS[2]) == 1 then
  extend(KEYS[1], KEYS[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
publish(ARGV[4], 's', ver, prev, ARGV[2], ARGV[1])
return {ver, prev, now_us}
"""

# KEYS: value, holders, clock. ARGV: member, who, channel
_RELEASE = _NOW + """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('EXISTS', KEYS[2]) == 1 then
  extend(KEYS[1], KEYS[2])
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local prev = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
  redis.call('DEL', KEYS[1])
  local ver = redis.call('INCR', KEYS[3])
  publish(ARGV[3], 'c', ver, prev, ARGV[2], '')
end
return 1
"""

# KEYS: value, clock.
_READ = """
local r = redis.call('HMGET', KEYS[1], 'v', 'n', 'w', 't')
r[5] = redis.call('GET', KEYS[2])
return r
"""

# KEYS: value, clock. ARGV: who, channel
_CLEAR = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local prev = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
redis.call('DEL', KEYS[1])
local ver = redis.call('INCR', KEYS[2])
publish(ARGV[2], 'c', ver, prev, ARGV[1], '')
return 1
"""

# KEYS: value1, holders1, value2, holders2, ... ARGV: member1, lease1_ms, member2, ...
# Returns the 1-based indices of the channels whose holder entry had vanished.
_REFRESH = _NOW + """
local lost = {}
for i = 1, #KEYS / 2 do
  local vk, hk = KEYS[2 * i - 1], KEYS[2 * i]
  local member = ARGV[2 * i - 1]
  if not redis.call('ZSCORE', hk, member) then lost[#lost + 1] = i end
  redis.call('ZADD', hk, now_ms + tonumber(ARGV[2 * i]), member)
  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now_ms)
  extend(vk, hk)
end
return lost
"""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What Redis holds for a channel: ``data`` is ``None`` when there is no value.

    Without a value, ``version`` is the clock at the time of reading: "no value as of
    this version", so that a later snapshot or update is recognised as newer.
    """

    data: bytes | None
    version: int
    who: str
    when_us: int


@dataclasses.dataclass(frozen=True)
class Update:
    """A parsed update message."""

    cleared: bool
    version: int
    previous: int
    when_us: int
    who: str
    data: bytes


def parse_update(message: bytes) -> Update:
    """Parse an update message; ``ValueError`` when it is malformed."""
    kind, version, previous, when, wholen, rest = message.split(b" ", 5)
    n = int(wholen)
    if kind not in (b"s", b"c") or n > len(rest):
        raise ValueError(f"malformed channel update message {message[:60]!r}")
    return Update(kind == b"c", int(version), int(previous), int(when),
                  rest[:n].decode("utf-8", "replace"), rest[n:])


def _snapshot(reply: Sequence[Any]) -> Snapshot:
    data, version, who, when, clock = reply
    if data is None:
        return Snapshot(None, int(clock or 0), "", 0)
    return Snapshot(data, int(version), (who or b"").decode("utf-8", "replace"), int(when or 0))


class Store:
    """The server-side operations on channels of one database (thread-safe)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.ns = Namespace.of(client)
        self._acquire = client.register_script(_ACQUIRE)
        self._set = client.register_script(_SET)
        self._release = client.register_script(_RELEASE)
        self._clear = client.register_script(_CLEAR)
        self._refresh = client.register_script(_REFRESH)
        self._read = client.register_script(_READ)

    def _keys(self, name: str) -> list[str]:
        return [self.ns.value_key(name), self.ns.holders_key(name), self.ns.clock]

    def acquire(self, name: str, member: str, lease: float, default: bytes | None,
                who: str) -> Snapshot:
        """Register ``member`` as a holder; store ``default`` if there is no value yet."""
        args: list[Any] = [member, int(lease * 1000), "1" if default is not None else "0",
                           default or b"", who, self.ns.update_channel(name)]
        return _snapshot(self._acquire(keys=self._keys(name), args=args))

    @property
    def set_script(self) -> str:
        """The text of the set script (to load it on a connection of one's own)."""
        return _SET

    def set_command(self, name: str, data: bytes, who: str,
                    orphan_lease_ms: int) -> tuple[Any, ...]:
        """The ``EVALSHA`` command of :meth:`set`, for pipelining on one's own connection.

        Its reply is ``[version, previous version, server time us]``.
        """
        return ("EVALSHA", self._set.sha, 3, self.ns.value_key(name), self.ns.holders_key(name),
                self.ns.clock, data, who, orphan_lease_ms, self.ns.update_channel(name))

    def set(self, name: str, data: bytes, who: str, orphan_lease: float) -> tuple[int, int, int]:
        """Store a new value; returns ``(version, previous version, server time us)``."""
        args: list[Any] = [data, who, int(orphan_lease * 1000), self.ns.update_channel(name)]
        version, previous, when = self._set(keys=self._keys(name), args=args)
        return int(version), int(previous), int(when)

    def release(self, name: str, member: str, who: str) -> bool:
        """Unregister ``member``; True when it was the last holder (the value is gone)."""
        args = [member, who, self.ns.update_channel(name)]
        return bool(self._release(keys=self._keys(name), args=args))

    def clear(self, name: str, who: str) -> bool:
        """Remove the value (holders read their default); True if there was one."""
        keys = [self.ns.value_key(name), self.ns.clock]
        return bool(self._clear(keys=keys, args=[who, self.ns.update_channel(name)]))

    def refresh(self, held: Sequence[tuple[str, str, float]]) -> list[int]:
        """Extend leases of ``(name, member, lease)``; indices of entries that had vanished."""
        keys: list[str] = []
        args: list[Any] = []
        for name, member, lease in held:
            keys += [self.ns.value_key(name), self.ns.holders_key(name)]
            args += [member, int(lease * 1000)]
        return [int(i) - 1 for i in self._refresh(keys=keys, args=args)]

    def read(self, name: str) -> Snapshot:
        """The current value and its metadata."""
        return _snapshot(self._read(keys=[self.ns.value_key(name), self.ns.clock]))
