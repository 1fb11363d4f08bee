-- Removes everything a node has on record: runs the leave logic for each of its
-- subscriptions and sign-ins, atomically, so that each resulting transition is reported to
-- exactly one caller.
-- KEYS: 1 nodes set, 2 node lease, 3 node subscriptions, 4 node sign-ins
-- ARGV: 1 node id, 2 key prefix, 3 '1' to remove a live node (its own graceful shutdown)
-- Returns a list of {kind, app, channel, user, count, seq}: kind 'removed' (a presence
-- member whose last connection went), 'count' (a channel's new total) or 'offline'.
local force = ARGV[3] == '1'
if not force and redis.call('EXISTS', KEYS[2]) == 1 then
  return {}
end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 and not force then
  return {}
end
local prefix = ARGV[2]
local out = {}
local function seq(app)
  return redis.call('INCR', prefix .. 'app:' .. app .. ':seq')
end

local touched = {}
local channels = {}
local subs = redis.call('HGETALL', KEYS[3])
for i = 1, #subs, 2 do
  local app, channel = string.match(subs[i], '^([^\n]*)\n([^\n]*)\n')
  local user = subs[i + 1]
  if app then
    local counts = prefix .. 'app:' .. app .. ':counts'
    if redis.call('HINCRBY', counts, channel, -1) <= 0 then
      redis.call('HDEL', counts, channel)
    end
    if user ~= '' then
      local base = prefix .. 'app:' .. app .. ':presence:' .. channel
      if redis.call('HINCRBY', base .. ':conns', user, -1) <= 0 then
        redis.call('HDEL', base .. ':conns', user)
        redis.call('HDEL', base .. ':members', user)
        out[#out + 1] = {'removed', app, channel, user, 0, seq(app)}
      end
    end
    local key = app .. '\n' .. channel
    if not touched[key] then
      touched[key] = true
      channels[#channels + 1] = {app, channel}
    end
  end
end
for _, entry in ipairs(channels) do
  local app, channel = entry[1], entry[2]
  local total = redis.call('HGET', prefix .. 'app:' .. app .. ':counts', channel) or '0'
  out[#out + 1] = {'count', app, channel, '', tonumber(total), seq(app)}
end

local signins = redis.call('HGETALL', KEYS[4])
for i = 1, #signins, 2 do
  local app = string.match(signins[i], '^([^\n]*)\n')
  local user = signins[i + 1]
  if app then
    local online = prefix .. 'app:' .. app .. ':online'
    if redis.call('HINCRBY', online, user, -1) <= 0 then
      redis.call('HDEL', online, user)
      out[#out + 1] = {'offline', app, '', user, 0, seq(app)}
    end
  end
end

redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return out
