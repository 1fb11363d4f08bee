-- Records a signed-in connection of this node and reads who of a watchlist is online.
-- KEYS: 1 nodes set, 2 node sign-ins, 3 app online, 4 app seq
-- ARGV: 1 node id, 2 sign-in field (app\nsocket_id), 3 user id, 4.. watched user ids
-- Returns {first_connection, seq, online_ids}.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return redis.error_reply('NODE_UNREGISTERED this node is not registered in the cluster')
end
local first = 0
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  if redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 then
    first = 1
  end
end
local seq = redis.call('INCR', KEYS[4])
local online = {}
for i = 4, #ARGV do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1 then
    online[#online + 1] = ARGV[i]
  end
end
return {first, seq, online}
