/**
 * The Lua scripts of the Redis store: each atomic step of ServerStore that touches more than one
 * key is one script. Every key a script touches belongs to one user (hash tag `{userId}`), so the
 * scripts also run on Redis Cluster. Keys a script derives (the dedupe key) start from a declared
 * key, so they carry its prefix and tag.
 */

/**
 * Lua: a token bucket step, `take(key, cost, capacity, refillPerSecond, now)` -> ok, retryAfterMs
 * (-1: never). The bucket hash expires once it would be full again.
 */
const TAKE_FN = `
local function take(key, cost, capacity, refill, now)
  local state = redis.call('HMGET', key, 'tokens', 'updatedAt')
  local tokens = tonumber(state[1]) or capacity
  local updated = tonumber(state[2]) or now
  local elapsed = math.max(0, now - updated) / 1000
  tokens = math.min(capacity, tokens + elapsed * refill)
  local ttl = 60000
  if refill > 0 then ttl = math.ceil(capacity / refill * 1000) + 1000 end
  local ok = tokens >= cost
  if ok then tokens = tokens - cost end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'updatedAt', tostring(now))
  redis.call('PEXPIRE', key, ttl)
  if ok then return true, 0 end
  if cost > capacity or refill <= 0 then return false, -1 end
  return false, math.ceil((cost - tokens) / refill * 1000)
end
`;

/**
 * Queue one message to several devices of one user, with the checks that come first and the
 * wake-up, in one step (see ServerStore.enqueue).
 * KEYS per recipient (5): queue zset, message hash, bytes counter, seq counter, expiry zset; then
 * the user's devices hash, the user's last-poll hash; then one hash per token bucket. Derived: the
 * queue's per-sender hash (queue key .. ':s': field <userId> counts messages, <userId>:b bytes).
 * ARGV (17): n, digest, expiresAt, maxMessages, maxBytes, fromUserId, fromDeviceId, sentAt,
 * sender|clientId, time Redis may drop the dedupe record, active devices only ('1' or ''), now,
 * number of buckets, wake-up ('1' or''), the sender's max messages and max bytes ('' for no
 * share), dormant-before time (''); per recipient (5): size, type, payload, id suffix, deviceId;
 * per bucket (3): cost, capacity, refill per second; with wake-up, per recipient its channel.
 * Order: the devices are active, the buckets have tokens, the id is new (a record counts until the
 * message's expiry; records live under the device's incarnation, its created/revoked times, so a
 * revoked device's records are gone for it); then each recipient not seen is skipped if dormant,
 * if the sender holds its share or if the queue is full, else written; then the wake-up ('message'
 * on each channel not skipped, also for a duplicate: the first send's wake-up may have been missed).
 * Answers {'queued' | 'duplicate' | 'skipped', skipped deviceId, reason, ...} | {'conflict'} |
 * {'gone', i} | {'limited', bucket, retryAfterMs}.
 */
export const ENQUEUE = `${TAKE_FN}
local n = tonumber(ARGV[1])
local digest = ARGV[2]
local expiresAt = ARGV[3]
local maxM = tonumber(ARGV[4])
local maxB = tonumber(ARGV[5])
local from = ARGV[6]
local nb = tonumber(ARGV[13])
local R = 17
local B = R + n * 5
local C = B + nb * 3
local devs = {}
local incarnations = {}
for i = 1, n do
  local dev = redis.call('HGET', KEYS[n * 5 + 1], ARGV[R + (i - 1) * 5 + 5])
  local r = dev and cjson.decode(dev)
  if ARGV[11] == '1' and (not r or r.revokedAt) then return {'gone', i} end
  devs[i] = r
  incarnations[i] = r and (tostring(r.createdAt) .. '-' .. tostring(r.revokedAt or '')) or '0'
end
for j = 1, nb do
  local a = B + (j - 1) * 3
  local ok, retry = take(KEYS[n * 5 + 2 + j], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[12]))
  if not ok then return {'limited', j, retry} end
end
local dedupe = {}
local seen = {}
local nseen = 0
for i = 1, n do
  local k = KEYS[(i - 1) * 5 + 1] .. ':dedupe:' .. incarnations[i] .. ':' .. ARGV[9]
  dedupe[i] = k
  local d = redis.call('GET', k)
  if d then
    local bar = string.find(d, '|', 1, true)
    if tonumber(string.sub(d, bar + 1)) <= tonumber(ARGV[8]) then
      d = false
    elseif string.sub(d, 1, bar - 1) ~= digest then
      return {'conflict'}
    end
  end
  seen[i] = d and true or false
  if seen[i] then nseen = nseen + 1 end
end
local function skipReason(i)
  local b = (i - 1) * 5
  local a = R + (i - 1) * 5
  local size = tonumber(ARGV[a + 1])
  if ARGV[17] ~= '' and devs[i] then
    local polled = tonumber(redis.call('HGET', KEYS[n * 5 + 2], ARGV[a + 5]) or '0')
    if math.max(polled, devs[i].createdAt) < tonumber(ARGV[17]) then return 'dormant' end
  end
  if ARGV[15] ~= '' then
    local held = redis.call('HMGET', KEYS[b + 1] .. ':s', from, from .. ':b')
    if tonumber(held[1] or '0') + 1 > tonumber(ARGV[15]) or tonumber(held[2] or '0') + size > tonumber(ARGV[16]) then return 'share' end
  end
  local count = redis.call('ZCARD', KEYS[b + 1])
  local bytes = tonumber(redis.call('GET', KEYS[b + 3]) or '0')
  if count + 1 > maxM or bytes + size > maxB then return 'full' end
  return false
end
local out = {''}
local skipped = {}
local added = 0
for i = 1, n do
  if not seen[i] then
    local reason = skipReason(i)
    local b = (i - 1) * 5
    local a = R + (i - 1) * 5
    if reason then
      skipped[i] = true
      table.insert(out, tonumber(ARGV[a + 5]))
      table.insert(out, reason)
    else
      local seq = redis.call('INCR', KEYS[b + 4])
      local id = string.format('%016d', seq) .. '-' .. ARGV[a + 4]
      local msg = cjson.encode({ id = id, from = { userId = from, deviceId = tonumber(ARGV[7]) }, sentAt = tonumber(ARGV[8]),
        type = tonumber(ARGV[a + 2]), payload = ARGV[a + 3], expiresAt = tonumber(expiresAt), bytes = tonumber(ARGV[a + 1]) })
      redis.call('ZADD', KEYS[b + 1], seq, id)
      redis.call('HSET', KEYS[b + 2], id, msg)
      redis.call('INCRBY', KEYS[b + 3], ARGV[a + 1])
      redis.call('ZADD', KEYS[b + 5], expiresAt, id)
      redis.call('HINCRBY', KEYS[b + 1] .. ':s', from, 1)
      redis.call('HINCRBY', KEYS[b + 1] .. ':s', from .. ':b', ARGV[a + 1])
      redis.call('SET', dedupe[i], digest .. '|' .. expiresAt, 'PXAT', ARGV[10])
      added = added + 1
    end
  end
end
if ARGV[14] == '1' then
  for i = 1, n do
    if not skipped[i] then redis.call('PUBLISH', ARGV[C + i], 'message') end
  end
end
if added > 0 then out[1] = 'queued' elseif nseen > 0 then out[1] = 'duplicate' else out[1] = 'skipped' end
return out
`;

/**
 * Lua: drops message `id` from the message hash, the byte count and its sender's counts (KEYS:
 * queue, messages, bytes).
 */
const DROP_MESSAGE = `
    local msg = redis.call('HGET', KEYS[2], id)
    if msg then
      local m = cjson.decode(msg)
      redis.call('DECRBY', KEYS[3], m.bytes)
      local s = KEYS[1] .. ':s'
      if redis.call('HINCRBY', s, m.from.userId, -1) <= 0 then
        redis.call('HDEL', s, m.from.userId, m.from.userId .. ':b')
      else
        redis.call('HINCRBY', s, m.from.userId .. ':b', -m.bytes)
      end
      redis.call('HDEL', KEYS[2], id)
    end`;

/**
 * Deletes the queue of a dormant device (see ServerStore.expire). KEYS: devices hash, last-poll
 * hash, queue, messages, bytes, expiry. ARGV: deviceId, dormant-before time. Answers how many
 * messages went (0 when the device is not dormant).
 */
export const EXPIRE_DORMANT = `
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return 0 end
local polled = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if math.max(polled, cjson.decode(d).createdAt) >= tonumber(ARGV[2]) then return 0 end
local n = redis.call('ZCARD', KEYS[3])
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[3] .. ':s')
return n
`;

/** Deletes messages by id. KEYS: queue, messages, bytes, expiry. ARGV: ids. Answers the count. */
export const ACK = `
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then${DROP_MESSAGE}
    redis.call('ZREM', KEYS[4], id)
    n = n + 1
  end
end
return n
`;

/** Deletes messages expired by ARGV[1]. KEYS: queue, messages, bytes, expiry. Answers {deleted, left}. */
export const EXPIRE_QUEUE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, 1000)
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then${DROP_MESSAGE}
    n = n + 1
  end
  redis.call('ZREM', KEYS[4], id)
end
return {n, redis.call('ZCARD', KEYS[4])}
`;

/**
 * Adds a device with the lowest free id, or renews `deviceId`. KEYS: devices hash.
 * ARGV: record JSON (deviceId 0), now, deviceId or '', min id, max id.
 * Answers the stored record JSON, or 'not-found' / 'limit'.
 */
export const PUT_DEVICE = `
local record = cjson.decode(ARGV[1])
local wanted = ARGV[3]
local id
if wanted ~= '' then
  id = tonumber(wanted)
  local prev = redis.call('HGET', KEYS[1], wanted)
  if not prev then return 'not-found' end
  local p = cjson.decode(prev)
  if p.revokedAt then return 'not-found' end
  record.createdAt = p.createdAt
else
  for candidate = tonumber(ARGV[4]), tonumber(ARGV[5]) do
    local d = redis.call('HGET', KEYS[1], tostring(candidate))
    if not d or cjson.decode(d).revokedAt then
      id = candidate
      break
    end
  end
  if not id then return 'limit' end
  record.createdAt = tonumber(ARGV[2])
end
record.deviceId = id
local json = cjson.encode(record)
redis.call('HSET', KEYS[1], tostring(id), json)
return json
`;

/**
 * Marks a device revoked and deletes its queue, keys, peer registration and dedupe records (by
 * moving to a new dedupe epoch). KEYS: devices, queue, messages, bytes, expiry, keys, prekeys,
 * kyber prekeys, peer. ARGV: deviceId, now. Answers the number of messages deleted, or -1.
 */
export const REVOKE_DEVICE = `
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return -1 end
local rec = cjson.decode(d)
if rec.revokedAt then return -1 end
rec.revokedAt = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
local n = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[2] .. ':s')
return n
`;

/**
 * Stores a device's keys. KEYS: base, prekeys, kyber prekeys. ARGV: base JSON, identityKey,
 * registrationId, number of prekeys, number of kyber prekeys, then the prekeys, then the kyber ones.
 */
export const PUT_KEYS = `
local prev = redis.call('GET', KEYS[1])
local same = false
if prev then
  local p = cjson.decode(prev)
  same = p.identityKey == ARGV[2] and tostring(p.registrationId) == ARGV[3]
end
local np = tonumber(ARGV[4])
local nk = tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[1])
if np > 0 or not same then
  redis.call('DEL', KEYS[2])
  for i = 1, np do redis.call('RPUSH', KEYS[2], ARGV[5 + i]) end
end
if nk > 0 or not same then
  redis.call('DEL', KEYS[3])
  for i = 1, nk do redis.call('RPUSH', KEYS[3], ARGV[5 + np + i]) end
end
return 1
`;

/**
 * The active devices that have uploaded keys, with their registration ids, in one step. KEYS: the
 * user's devices hash, the prefix of its key records (the record of device N is that prefix .. N).
 * Answers {deviceId, registrationId, ...}.
 */
export const REGISTRATIONS = `
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local d = cjson.decode(all[i + 1])
  if not d.revokedAt then
    local base = redis.call('GET', KEYS[2] .. all[i])
    if base then
      table.insert(out, tonumber(all[i]))
      table.insert(out, cjson.decode(base).registrationId)
    end
  end
end
return out
`;

/**
 * Pops one EC and one Kyber one-time prekey (none when ARGV[1] is '0'). KEYS: base, prekeys,
 * kyber. Answers {base, pre, kyber} or nil.
 */
export const TAKE_BUNDLE = `
local base = redis.call('GET', KEYS[1])
if not base then return nil end
if ARGV[1] == '0' then return {base, '', ''} end
local pre = redis.call('LPOP', KEYS[2]) or ''
local kyber = redis.call('LPOP', KEYS[3]) or ''
return {base, pre, kyber}
`;

/** Token bucket (see TAKE_FN). KEYS: bucket hash. ARGV: cost, capacity, refill per second, now. Answers {1} or {0, retryAfterMs}. */
export const TAKE_TOKENS = `${TAKE_FN}
local ok, retry = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if ok then return {1} end
return {0, retry}
`;

/**
 * Claims a session's request nonce while the session exists and has not expired. KEYS: session,
 * nonce. ARGV: time Redis may drop the nonce, now. Answers 'claimed', 'replayed' or 'ended'.
 */
export const CLAIM_SESSION_NONCE = `
local s = redis.call('GET', KEYS[1])
if not s or cjson.decode(s).expiresAt <= tonumber(ARGV[2]) then return 'ended' end
if redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[1], 'NX') then return 'claimed' end
return 'replayed'
`;

/** Compare and set: KEYS[1] becomes ARGV[2] only if it is ARGV[1] ('' for absent). ARGV[3]: PXAT or ''. */
export const COMPARE_AND_SET = `
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
`;

/** The oldest ARGV[1] + 1 messages of a queue. KEYS: queue, messages. Answers the JSON of each (false if acked meanwhile). */
export const FETCH = `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]))
if #ids == 0 then return {} end
local out = redis.call('HMGET', KEYS[2], unpack(ids))
for i = 1, #out do if not out[i] then out[i] = '' end end
return out
`;
