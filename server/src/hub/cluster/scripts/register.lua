-- Registers a node id, refusing one that is taken.
-- KEYS: 1 nodes set, 2 node lease
-- ARGV: 1 node id, 2 lease in milliseconds
-- Returns 1 when registered, 0 when the id is in use.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
return 1
