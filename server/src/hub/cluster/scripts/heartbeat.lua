-- Renews this node's lease, unless another node already reaped it as dead.
-- KEYS: 1 nodes set, 2 node lease
-- ARGV: 1 node id, 2 lease in milliseconds
-- Returns 1 when renewed, 0 when the node is no longer registered.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
return 1
