-- Forgets one subscription of this node and, for presence, its member's connection.
-- Safe to repeat: a subscription no longer on record changes nothing.
-- KEYS: 1 node subscriptions, 2 app counts, 3 app seq,
--       4 channel connections per user, 5 channel members
-- ARGV: 1 subscription field (app\nchannel\nsocket_id), 2 channel
-- Returns {recorded, removed_member, user, count, seq}.
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then
  return {0, 0, '', 0, 0}
end
redis.call('HDEL', KEYS[1], ARGV[1])
local count = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if count <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  count = 0
end
local removed = 0
if user ~= '' then
  local total = redis.call('HINCRBY', KEYS[4], user, -1)
  if total <= 0 then
    redis.call('HDEL', KEYS[4], user)
    redis.call('HDEL', KEYS[5], user)
    removed = 1
  end
end
local seq = redis.call('INCR', KEYS[3])
return {1, removed, user, count, seq}
