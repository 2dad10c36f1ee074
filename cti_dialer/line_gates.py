"""The Lua that decides which line a call may take now, shared by the claim scripts.

Pure text and argument packing (no Redis here): ``scripts`` and
``record_scripts`` prepend ``LINES`` to the scripts that take a line slot,
and pass the candidates with ``group_args``.
"""
from typing import List

# Line gates, shared by the claim scripts: which candidate line a call may
# take now, and what taking it closes behind it.
#
# The domain's line-state hash (keys.Keys.line_state) holds, across hosts:
#   'rest:<line>'      unix time before which the line rests (mod_cti's line rest)
#   'rest@<group>'     the same for a line group (the group's rest)
#   'out:<line>'       the line is out of service (fault detection) until this
#                      time; then one call may take it as the probe, and the
#                      next probe is due an interval later unless a success
#                      (LINE_RESULT) deletes the field first
#   'failures:<line>'  consecutive failed calls (LINE_RESULT)
# A line whose limit is full, that rests, or that is out is skipped like a
# full one: the next line of its tier, then the next tier, then the next
# group is tried. The earliest time a rest or an outage ends is returned as
# "wake", so a caller that found no line knows when to look again.
#
# read_groups(a, k, now) reads from ARGV[a]: the number of entries G, then per
# entry: its position, group name, group rest (seconds), n, then n lines as
# (name, limit, rest seconds, probe interval seconds; 0 = no fault detection);
# and the line lease keys from KEYS[k..], one per line in that order.
LINES = r"""
local function read_groups(a, k, now)
  local entries, bykey = {}, {}
  local count = tonumber(ARGV[a]); a = a + 1
  for g = 1, count do
    local entry = {position = tonumber(ARGV[a]), name = ARGV[a + 1], rest = tonumber(ARGV[a + 2]), lines = {}}
    local n = tonumber(ARGV[a + 3]); a = a + 4
    for i = 1, n do
      local key = KEYS[k]; k = k + 1
      -- A line listed in two groups is one line: share its count.
      if not bykey[key] then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        bykey[key] = {key = key, name = ARGV[a], limit = tonumber(ARGV[a + 1]), rest = tonumber(ARGV[a + 2]),
                      probe = tonumber(ARGV[a + 3]), count = redis.call('ZCARD', key)}
      end
      entry.lines[i] = bykey[key]
      a = a + 4
    end
    entries[g] = entry
  end
  return entries, a
end
local function gate(state, field, now)
  local t = tonumber(redis.call('HGET', state, field))
  if t and t > now then return t end
  return nil
end
-- The least-loaded open line of the first entry that has one; nil and the
-- earliest reopening time (or nil) when none is open.
local function pick_line(entries, state, now)
  local wake = nil
  local function later(t) if t and (wake == nil or t < wake) then wake = t end end
  for _, entry in ipairs(entries) do
    local closed = entry.rest > 0 and gate(state, 'rest@' .. entry.name, now)
    later(closed)
    if not closed then
      local best = nil
      for _, line in ipairs(entry.lines) do
        if line.count < line.limit then
          local shut = (line.probe > 0 and gate(state, 'out:' .. line.name, now))
                       or (line.rest > 0 and gate(state, 'rest:' .. line.name, now))
          later(shut)
          if not shut and (best == nil or line.count / line.limit < best.count / best.limit) then best = line end
        end
      end
      if best then return best, entry, nil end
    end
  end
  return nil, nil, wake
end
-- Take a slot on `line` for claim `id`: its lease, and the rests and probe it starts.
local function take_slot(line, entry, state, id, now, expiry)
  redis.call('ZADD', line.key, expiry, id)
  line.count = line.count + 1
  if line.rest > 0 then redis.call('HSET', state, 'rest:' .. line.name, now + line.rest) end
  if entry.rest > 0 then redis.call('HSET', state, 'rest@' .. entry.name, now + entry.rest) end
  if line.probe > 0 and redis.call('HEXISTS', state, 'out:' .. line.name) == 1 then
    -- This call is the probe of a line out of service: the next waits an interval.
    redis.call('HSET', state, 'out:' .. line.name, now + line.probe)
  end
end
-- A task's pace (cps), by the generic cell rate algorithm on one key shared
-- by every host: returns the theoretical arrival time to store after taking
-- one call, or nil and the time the next call is allowed.
local function pace_next(key, interval, tolerance, now)
  if interval <= 0 then return now end
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  if tat - now > tolerance then return nil, tat - tolerance end
  return tat + interval
end
local function pace_take(key, interval, tat, now)
  if interval > 0 then
    redis.call('SET', key, tat, 'PX', math.ceil((tat - now + 1) * 1000))
  end
end
"""

def group_args(groups) -> List:
    """ARGV for line groups as LINES' read_groups reads them.

    ``groups`` is a list of groups of (line name, limit) pairs (each group's
    position is its index, nothing rests, no fault detection) or a
    ``store.Candidates``: the position is the group's index among the task's
    line groups, so a group in priority tiers is several entries with one
    position, tried in order, and the records still say which group the
    call went to; its ``gates`` give the rests and probe intervals.
    """
    positions = getattr(groups, "positions", None)
    entry_gates = getattr(groups, "entry_gates", None)
    line_gates = getattr(groups, "line_gates", None) or {}
    groups = getattr(groups, "groups", groups)
    out = [len(groups)]
    for index, group in enumerate(groups):
        name, rest = entry_gates[index] if entry_gates else ("", 0.0)
        out += [positions[index] if positions is not None else index, name, rest, len(group)]
        for line, limit in group:
            out.extend((line, limit, *line_gates.get(line, (0.0, 0.0))))
    return out


