"""The Lua script that merges contact ops into stored contact states, as Redis runs it.

It mirrors domain/contact_state.py's transitions on domain/contact_codec.py's bytes; the
contract tests (tests/integration/test_contact_store_contract.py) hold the two together.
"""

from __future__ import annotations

import struct

from processor.domain.contact_state import MAX_COUNTED_SENDS

# Mirrors apply_delivery_event / apply_contact_update on the codec of contact_codec.py: writes
#   >BBI4I4I4   version 3 | flags | last send (s, 0 = none) | last engaged (same)
#               | unsubscribed stated at (same)
#   then the recent sends, newest first, as LEB128 varints of seconds before the previous one
#   (the first: before the last send); at most @MAX_SENDS@ of them, all after the last engaged.
# and reads versions 1 (12 bytes) and 2 (16), migrating their count of sends since the
# engagement (uint16 after the last engaged time) to that many seconds back from the last send.
#   flags: bits 0-1 consent (0 unknown, 1 granted, 2 revoked), 2 unsubscribed, 3 deleted,
#          4 hard bounced, 5 complained, 6 ever engaged, 7 reserved.
# KEYS: the tenant's contact shards. ARGV[1]: the ops packed back to back, each `OP_HEAD`
# (shard index into KEYS, op code, at, id length) then the contact id's UTF-8 bytes. One packed
# argument rather than four per op: building thousands of arguments cost the worker more CPU
# than the merge itself.
# A value it cannot read is left as it is (a newer version may have written it).
# Returns {contacts changed, values left unread}.
OP_HEAD = struct.Struct(">IcIH")
MERGE_CONTACTS = """
local band, bor, bnot = bit.band, bit.bor, bit.bnot
local MAX_SENDS = @MAX_SENDS@
local function decode(raw)
  local n, v, f, sent, eng, uat, sends = #raw, string.byte(raw, 1), 0, 0, 0, 0, {}
  if v == 3 and n >= 14 then
    v, f, sent, eng, uat = struct.unpack('>BBI4I4I4', raw)
    local pos, prev = 15, sent
    while pos <= n do
      local d, mult, size, b = 0, 1, 0, 128
      while b >= 128 do
        b = string.byte(raw, pos)
        if b == nil or size == 5 then return false end
        d, mult, size, pos = d + (b % 128) * mult, mult * 128, size + 1, pos + 1
      end
      prev = prev - d
      if prev < 1 or (#sends > 0 and d == 0) or (eng > 0 and prev <= eng)
        or #sends == MAX_SENDS then return false end
      sends[#sends + 1] = prev
    end
  elseif (v == 2 and n == 16) or (v == 1 and n == 12) then
    local count
    if v == 2 then v, f, sent, eng, count, uat = struct.unpack('>BBI4I4HI4', raw)
    else v, f, sent, eng, count = struct.unpack('>BBI4I4H', raw) end
    local t = sent
    while t > eng and t > sent - math.min(count, MAX_SENDS) do
      sends[#sends + 1] = t
      t = t - 1
    end
  else
    return false
  end
  if band(f, 3) == 3 or band(f, 128) ~= 0 then return false end
  return {f = f, sent = sent, eng = eng, uat = uat, sends = sends, raw = raw}
end
local function encode(s)
  local parts, prev = {struct.pack('>BBI4I4I4', 3, s.f, s.sent, s.eng, s.uat)}, s.sent
  for _, t in ipairs(s.sends) do
    local d = prev - t
    prev = t
    repeat
      local b = d % 128
      d = (d - b) / 128
      if d > 0 then b = b + 128 end
      parts[#parts + 1] = string.char(b)
    until d == 0
  end
  return table.concat(parts)
end
local cache, unread = {}, 0
local ops, pos = ARGV[1], 1
while pos <= #ops do
  local k, op, at, id
  k, op, at, id, pos = struct.unpack('>I4c1I4Hc0', ops, pos)
  local shard = cache[k]
  if shard == nil then shard = {}; cache[k] = shard end
  local s = shard[id]
  if s == nil then
    local raw = redis.call('HGET', KEYS[k], id)
    if not raw then
      s = {f = 0, sent = 0, eng = 0, uat = 0, sends = {}}
    else
      s = decode(raw)
    end
    if not s then unread = unread + 1 end
    shard[id] = s
  end
  -- A deleted contact is erased (flag 8 alone) and keeps nothing more: apply_*'s ERASED.
  if s and band(s.f, 8) ~= 0 then
    if s.f ~= 8 or s.sent ~= 0 or s.eng ~= 0 or s.uat ~= 0 or #s.sends > 0 then
      s.f, s.sent, s.eng, s.uat, s.sends = 8, 0, 0, 0, {}
    end
  elseif s then
    if op == 'h' then s.f = bor(s.f, 16)
    elseif op == 'c' then s.f = bor(s.f, 32)
    elseif op == 'u' then
      -- The latest statement wins; at the same second, an unsubscribe does.
      if s.uat == 0 or at >= s.uat then s.f = bor(s.f, 4); s.uat = at end
    elseif op == 'U' then
      if s.uat == 0 or at > s.uat then s.f = band(s.f, bnot(4)); s.uat = at end
    elseif op == 'd' then s.f, s.sent, s.eng, s.uat, s.sends = 8, 0, 0, 0, {}
    elseif op == 'g' then s.f = bor(band(s.f, bnot(3)), 1)
    elseif op == 'r' then s.f = bor(band(s.f, bnot(3)), 2)
    elseif op == 's' then
      -- The latest send; and, after the last engagement, one of the recent sends (newest first).
      if at > s.sent then s.sent = at end
      if s.eng == 0 or at > s.eng then
        local sends, i = s.sends, 1
        while sends[i] and sends[i] > at do i = i + 1 end
        if sends[i] ~= at and i <= MAX_SENDS then
          table.insert(sends, i, at)
          sends[MAX_SENDS + 1] = nil
        end
      end
    elseif op == 'e' then
      -- The latest engagement; the recent sends not later than it no longer count.
      s.f = bor(s.f, 64)
      if s.eng == 0 or at > s.eng then
        s.eng = at
        local sends = s.sends
        while #sends > 0 and sends[#sends] <= at do sends[#sends] = nil end
      end
    else
      return redis.error_reply('unknown contact op ' .. op)
    end
  end
end
local changed = 0
for k, shard in pairs(cache) do
  for id, s in pairs(shard) do
    if s then
      local packed = encode(s)
      if packed ~= s.raw then
        redis.call('HSET', KEYS[k], id, packed)
        changed = changed + 1
      end
    end
  end
end
return {changed, unread}
""".replace("@MAX_SENDS@", str(MAX_COUNTED_SENDS))
