-- Records one subscription of this node and, for presence, its member.
-- KEYS: 1 nodes set, 2 node subscriptions, 3 app counts, 4 app seq,
--       5 channel connections per user, 6 channel members, 7 channel cache
-- ARGV: 1 node id, 2 subscription field (app\nchannel\nsocket_id), 3 channel,
--       4 user id ('' unless presence), 5 user info JSON, 6 member limit
-- Returns {status, new_member, count, seq, members, cached_frame}; status 1 = joined,
-- -1 = the presence channel is full, -2 = already on record.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return redis.error_reply('NODE_UNREGISTERED this node is not registered in the cluster')
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return {-2, 0, 0, 0, {}, false}
end
local user = ARGV[4]
local new_member = 0
if user ~= '' then
  if redis.call('HEXISTS', KEYS[5], user) == 0 then
    if redis.call('HLEN', KEYS[6]) >= tonumber(ARGV[6]) then
      return {-1, 0, 0, 0, {}, false}
    end
    redis.call('HSET', KEYS[6], user, ARGV[5])
    new_member = 1
  end
  redis.call('HINCRBY', KEYS[5], user, 1)
end
redis.call('HSET', KEYS[2], ARGV[2], user)
local count = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
local seq = redis.call('INCR', KEYS[4])
local members = {}
if user ~= '' then
  members = redis.call('HGETALL', KEYS[6])
end
local cached = redis.call('HGET', KEYS[7], 'frame')
return {1, new_member, count, seq, members, cached}
