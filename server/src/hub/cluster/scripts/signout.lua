-- Forgets a signed-in connection of this node. Safe to repeat.
-- KEYS: 1 node sign-ins, 2 app online, 3 app seq
-- ARGV: 1 sign-in field (app\nsocket_id)
-- Returns {last_connection, seq}.
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then
  return {0, 0}
end
redis.call('HDEL', KEYS[1], ARGV[1])
local last = 0
if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
  redis.call('HDEL', KEYS[2], user)
  last = 1
end
return {last, redis.call('INCR', KEYS[3])}
