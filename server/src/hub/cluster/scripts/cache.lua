-- Stores the last event of a cache channel and stamps it with the app's sequence.
-- KEYS: 1 channel cache, 2 app seq
-- ARGV: 1 frame, 2 data, 3 TTL in seconds
redis.call('HSET', KEYS[1], 'frame', ARGV[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return redis.call('INCR', KEYS[2])
