"""A Redis hash per job, with per-owner listings, queue positions, idempotency keys, worker liveness
and a reaper. Every write that checks something runs in one Lua script or a WATCH/MULTI transaction.

Keys (``prefix`` defaults to ``cs``)::

    cs:job:<id>                 hash: id, owner, state, stage, request, progress, error, created,
                                updated, heartbeat, timings, result, archive
    cs:owner:<owner>            sorted set of the owner's job ids by creation time
    cs:queued                   sorted set of queued job ids by creation time (queue positions)
    cs:queued:<owner>           the owner's queued job ids (the per-key cap)
    cs:inflight:<owner>         sorted set: the owner's queued and running job ids -> weight
                                (the per-key quota on subjects in flight)
    cs:stored:<owner>           sorted set: the owner's succeeded, not yet expired or purged job ids
                                -> bytes of their stored files (the per-key quota on stored bytes)
    cs:running                  set of running job ids (the reaper's worklist)
    cs:finished                 sorted set of finished, not yet expired job ids by finishing time
                                (retention's worklist)
    cs:idem:<owner>:<sha256>    "<job id> <request hash>" for Idempotency-Key
    cs:workers:<queue>          sorted set: worker name -> expiry (Redis server time) of its last beat
    cs:graph:<id>               hash: a graph job's fan-in ledger: count, size, subjects, subjects_done;
                                lease:<kind>:<i> "<token> <beat>", done:<kind>:<i>, stage:<stage>:<i>,
                                n:done:<kind> and n:<stage> counters, t:<kind>:<i> "<seconds> <worker>"
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from dataclasses import fields
from typing import Any

import redis

from cardiosynth.jobs.base import (
    TERMINAL,
    TRANSITIONS,
    ChunkPlan,
    GraphState,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    Job,
    JobState,
    QueueFullError,
    StoredBytesQuotaError,
    SubjectQuotaError,
    TransitionRefusedError,
    idempotency_digest,
    owner_id,
    quota_detail,
    request_hash,
    stale_error,
    stored_detail,
)
from cardiosynth.queues import GRAPH_STAGE, STAGES

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "Job",
    "JobState",
    "QueueFullError",
    "RedisJobStore",
    "TransitionRefusedError",
    "owner_id",
    "request_hash",
]

log = logging.getLogger(__name__)

# The idempotency lookup, the cap and the insert in one step: no two creators can both see room for
# one more job, and a retry of an existing job is answered before the cap is looked at.
# KEYS: idem, job, owner set, queued set, owner's queued set, owner's in-flight weights, owner's
# stored bytes.
# ARGV: use idem (1/0), job id, request digest, now, ttl, cap (-1: none), weight, subject quota
# (-1: none), stored-bytes quota (-1: none), job key prefix, then field/value pairs.
_CREATE = """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return {'existing', existing} end
end
local cap = tonumber(ARGV[6])
if cap >= 0 and redis.call('ZCARD', KEYS[5]) >= cap then return {'full', ''} end
local weight = tonumber(ARGV[7])
local quota = tonumber(ARGV[8])
if quota >= 0 then
  local in_flight = 0
  local pairs_ = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
  for i = 2, #pairs_, 2 do in_flight = in_flight + tonumber(pairs_[i]) end
  if in_flight + weight > quota then return {'quota', tostring(in_flight)} end
end
local max_stored = tonumber(ARGV[9])
if max_stored >= 0 then
  local stored = 0
  local pairs_ = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
  for i = 2, #pairs_, 2 do
    -- A record that expired without the retention pass (it outlives its files) counts no more.
    if redis.call('EXISTS', ARGV[10] .. pairs_[i - 1]) == 1 then
      stored = stored + tonumber(pairs_[i])
    else
      redis.call('ZREM', KEYS[7], pairs_[i - 1])
    end
  end
  if stored >= max_stored then return {'stored', string.format('%d', stored)} end
end
local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[6], weight, ARGV[2])
if ARGV[1] == '1' then redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[5]) end
return {'created', ''}
"""

# Release an idempotency key only if it still names the job that is gone (compare and delete).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A heartbeat touches only an existing record of a job running at the beating stage: it never
# recreates a hash that expired or was lost (a hash holding only "heartbeat" is a 500 waiting to happen).
_HEARTBEAT = """
local v = redis.call('HMGET', KEYS[1], 'state', 'stage')
if v[1] ~= 'running' then return 0 end
if (v[2] or 'vae') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[2])
return 1
"""

# Progress and timings of a live job only (not terminal, not gone).
_UPDATE = """
local s = redis.call('HGET', KEYS[1], 'state')
if (not s) or s == 'succeeded' or s == 'failed' or s == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Mark a finished job expired, once (never a record that is gone or still live).
_EXPIRE = """
local v = redis.call('HMGET', KEYS[1], 'state', 'expired_at')
if v[1] ~= 'succeeded' and v[1] ~= 'failed' and v[1] ~= 'cancelled' then return 0 end
if v[2] and v[2] ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'expired_at', ARGV[1])
return 1
"""

# The archive state of a succeeded, unexpired job (never a record that is gone: no stray hash), unless
# the recorded state is one of ARGV[2..]. ARGV[1]: the new state's JSON. Returns {written, recorded}.
_ARCHIVE = """
local v = redis.call('HMGET', KEYS[1], 'state', 'expired_at', 'archive')
if v[1] ~= 'succeeded' or (v[2] and v[2] ~= '') then return {0, ''} end
if v[3] and v[3] ~= '' and v[3] ~= 'null' then
  local state = cjson.decode(v[3])['state']
  for i = 2, #ARGV do
    if ARGV[i] == state then return {1, v[3]} end
  end
end
redis.call('HSET', KEYS[1], 'archive', ARGV[1])
return {2, ARGV[1]}
"""

# Worker liveness on the Redis server's clock (no skew between worker and gateway machines).
_WORKER_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
_WORKER_LIVE = """
local t = redis.call('TIME')
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
return (expires and tonumber(expires) > tonumber(t[1]) + tonumber(t[2]) / 1000000) and 1 or 0
"""
_LIVE_WORKERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS do out[i] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf') end
return out
"""

# The graph ledger's scripts: KEYS[1] the job hash, KEYS[2] the graph hash. A finished or gone job
# answers 'gone' / 0 / -1 and nothing is written.
_LIVE_FN = """
local function live()
  local s = redis.call('HGET', KEYS[1], 'state')
  return s and s ~= 'succeeded' and s ~= 'failed' and s ~= 'cancelled'
end
-- The progress JSON in stage order (cjson would order the keys at random): pairs of stage and total
-- from ARGV[first], done counts read by done(stage), then the subjects.
local function progress_json(first, done, subjects_done, subjects)
  local parts = {}
  for i = first, #ARGV, 2 do
    parts[#parts + 1] = string.format('"%s": {"done": %d, "total": %d}', ARGV[i], done(ARGV[i]), ARGV[i + 1])
  end
  parts[#parts + 1] = string.format('"subjects": {"done": %d, "total": %d}', subjects_done, subjects)
  return '{' .. table.concat(parts, ', ') .. '}'
end
"""
# ARGV: count, size, subjects, ttl, then progress stage/total pairs.
_PLAN = (
    _LIVE_FN
    + """
if not live() then return false end
if redis.call('HSETNX', KEYS[2], 'count', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'size', ARGV[2], 'subjects', ARGV[3], 'subjects_done', 0)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  local zero = function(stage) return 0 end
  redis.call('HSET', KEYS[1], 'progress', progress_json(5, zero, 0, tonumber(ARGV[3])))
end
return redis.call('HMGET', KEYS[2], 'count', 'size', 'subjects')
"""
)
# ARGV: kind, index, token, now, stale_after_s.
_TAKE = (
    _LIVE_FN
    + """
if not live() then return 'gone' end
local id = ARGV[1] .. ':' .. ARGV[2]
if redis.call('HEXISTS', KEYS[2], 'done:' .. id) == 1 then return 'done' end
local lease = redis.call('HGET', KEYS[2], 'lease:' .. id)
if lease then
  local token, beat = string.match(lease, '^(%S+) (%S+)$')
  local mine = string.match(token, '^(.*):[^:]*$') == string.match(ARGV[3], '^(.*):[^:]*$')
  if (not mine) and tonumber(ARGV[4]) - tonumber(beat) < tonumber(ARGV[5]) then return 'held' end
end
redis.call('HSET', KEYS[2], 'lease:' .. id, ARGV[3] .. ' ' .. ARGV[4])
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[4])
return 'taken'
"""
)
# ARGV: kind, index, token, now.
_BEAT = (
    _LIVE_FN
    + """
if not live() then return 0 end
local field = 'lease:' .. ARGV[1] .. ':' .. ARGV[2]
local lease = redis.call('HGET', KEYS[2], field)
if (not lease) or string.match(lease, '^(%S+) ') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], field, ARGV[3] .. ' ' .. ARGV[4])
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[4])
return 1
"""
)
# ARGV: stage, index, subjects, now, then progress stage/total pairs.
_MARK = (
    _LIVE_FN
    + """
if not live() then return 0 end
if redis.call('HEXISTS', KEYS[2], 'count') == 0 then return 0 end
if redis.call('HSETNX', KEYS[2], 'stage:' .. ARGV[1] .. ':' .. ARGV[2], '1') == 1 then
  redis.call('HINCRBY', KEYS[2], 'n:' .. ARGV[1], 1)
  redis.call('HINCRBY', KEYS[2], 'subjects_done', ARGV[3])
end
local done = function(stage) return tonumber(redis.call('HGET', KEYS[2], 'n:' .. stage) or '0') end
local progress = progress_json(5, done, tonumber(redis.call('HGET', KEYS[2], 'subjects_done')),
                               tonumber(redis.call('HGET', KEYS[2], 'subjects')))
redis.call('HSET', KEYS[1], 'progress', progress, 'updated', ARGV[4])
return 1
"""
)
# ARGV: kind, index, token, seconds, worker.
_FINISH = (
    _LIVE_FN
    + """
if not live() then return -1 end
local id = ARGV[1] .. ':' .. ARGV[2]
if redis.call('HSETNX', KEYS[2], 'done:' .. id, '1') == 1 then
  redis.call('HINCRBY', KEYS[2], 'n:done:' .. ARGV[1], 1)
  redis.call('HSET', KEYS[2], 't:' .. id, ARGV[4] .. ' ' .. ARGV[5])
end
local lease = redis.call('HGET', KEYS[2], 'lease:' .. id)
if lease and string.match(lease, '^(%S+) ') == ARGV[3] then redis.call('HDEL', KEYS[2], 'lease:' .. id) end
return tonumber(redis.call('HGET', KEYS[2], 'n:done:' .. ARGV[1]))
"""
)
# ARGV: cutoff (a lease beaten before it is stale). Returns the released "<kind>:<index>".
_RELEASE_STALE = """
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local id = string.match(all[i], '^lease:(.+)$')
  if id then
    local beat = tonumber(string.match(all[i + 1], ' (%S+)$'))
    if beat < tonumber(ARGV[1]) then
      redis.call('HDEL', KEYS[2], all[i])
      out[#out + 1] = id
    end
  end
end
return out
"""

_JSON_FIELDS = ("request", "progress", "error", "timings", "result")


def _field(name: str, value: Any) -> str:
    """One hash field as stored."""
    if name in _JSON_FIELDS:
        return json.dumps(value)
    if name in ("created", "updated"):
        return repr(float(value))
    if name in ("heartbeat", "expired_at"):
        return repr(float(value)) if value is not None else ""
    if name == "state":
        return JobState(value).value
    if name in ("attempts", "weight", "stored_bytes"):
        return str(int(value))
    return str(value)


class RedisJobStore:
    """Job records in Redis (implements :class:`cardiosynth.jobs.base.JobStore`)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "cs", ttl_s: int = 7 * 24 * 3600) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._create = client.register_script(_CREATE)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._update = client.register_script(_UPDATE)
        self._expire = client.register_script(_EXPIRE)
        self._worker_beat = client.register_script(_WORKER_BEAT)
        self._live_workers = client.register_script(_LIVE_WORKERS)
        self._worker_live = client.register_script(_WORKER_LIVE)
        self._plan = client.register_script(_PLAN)
        self._take = client.register_script(_TAKE)
        self._beat = client.register_script(_BEAT)
        self._mark = client.register_script(_MARK)
        self._finish = client.register_script(_FINISH)
        self._release_stale = client.register_script(_RELEASE_STALE)
        self._archive = client.register_script(_ARCHIVE)

    def ping(self) -> None:
        self.r.ping()

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- creation ---------------------------------------------------------------------------------

    def create(
        self,
        owner: str,
        request: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        max_queued: int | None = None,
        weight: int = 0,
        max_subjects: int | None = None,
        stage: str = STAGES[0],
        max_stored_bytes: int | None = None,
    ) -> tuple[Job, bool]:
        digest = request_hash(request)
        idem = self._k("idem", owner, idempotency_digest(idempotency_key)) if idempotency_key else ""
        for _ in range(3):  # a released key (its job gone) is claimed again at most twice
            now = time.time()
            job = Job(uuid.uuid4().hex, owner, JobState.QUEUED, request, now, now, weight=weight, stage=stage)
            flat = [item for pair in self._encode(job).items() for item in pair]
            keys = [idem or self._k("idem", "-"), self._k("job", job.id), self._k("owner", owner),
                    self._k("queued"), self._k("queued", owner), self._k("inflight", owner),
                    self._k("stored", owner)]  # fmt: skip
            args = ["1" if idem else "0", job.id, digest, repr(now), self.ttl_s,
                    -1 if max_queued is None else max_queued, weight,
                    -1 if max_subjects is None else max_subjects,
                    -1 if max_stored_bytes is None else max_stored_bytes,
                    self._k("job", ""), *flat]  # fmt: skip
            status, value = self._create(keys=keys, args=args)
            status = status.decode()
            if status == "created":
                return job, True
            if status == "full":
                raise QueueFullError(f"{max_queued} jobs already queued for this key")
            if status == "quota":
                quota = -1 if max_subjects is None else max_subjects  # "quota" needs one: never -1
                raise SubjectQuotaError(quota_detail(int(value.decode()), weight, quota))
            if status == "stored":
                limit = -1 if max_stored_bytes is None else max_stored_bytes  # "stored" needs one
                raise StoredBytesQuotaError(stored_detail(int(value.decode()), limit))
            existing = value.decode()
            other_id, other_digest, *rest = existing.split(" ")
            if other_digest != digest:
                raise IdempotencyConflictError(
                    f"idempotency key reused with a different body (job {other_id})"
                )
            if rest and rest[0] == "pending":  # written by an earlier version that claimed first
                raise IdempotencyInProgressError(
                    f"job {other_id} for this idempotency key is still being created"
                )
            found = self.get(other_id)
            if found is not None:
                return found, False
            # The key's job is gone (expired or lost): release the key and create the job anew.
            log.warning("idempotency key of owner %s names job %s, which is gone: released", owner, other_id)
            self._release(keys=[idem], args=[existing])
        raise IdempotencyInProgressError("idempotency key contended; retry")

    # -- reading ----------------------------------------------------------------------------------

    @staticmethod
    def _encode(job: Job) -> dict[str, str]:
        return {
            name: _field(name, getattr(job, name))
            for name in ("id", "owner", "state", "stage", "request", "created", "updated", "progress",
                         "error", "timings", "result", "heartbeat", "attempts", "expired_at", "weight",
                         "stored_bytes")
        }  # fmt: skip

    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> Job | None:
        """The job, or ``None`` for a hash that is not a whole record (written by a stray write)."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        if not {"id", "owner", "state", "request", "created", "updated"} <= d.keys():
            return None
        return Job(
            id=d["id"],
            owner=d["owner"],
            state=JobState(d["state"]),
            request=json.loads(d["request"]),
            created=float(d["created"]),
            updated=float(d["updated"]),
            progress=json.loads(d.get("progress", "{}")),
            error=json.loads(d.get("error", "null")),
            timings=json.loads(d.get("timings", "{}")),
            result=json.loads(d.get("result", "null")),
            heartbeat=float(d["heartbeat"]) if d.get("heartbeat") else None,
            stage=d.get("stage") or STAGES[0],
            attempts=int(d.get("attempts") or 0),
            expired_at=float(d["expired_at"]) if d.get("expired_at") else None,
            weight=int(d.get("weight") or 0),
            stored_bytes=int(d.get("stored_bytes") or 0),
            archive=json.loads(d["archive"]) if d.get("archive") else None,
        )

    def get(self, job_id: str, *, result: bool = True) -> Job | None:
        key = self._k("job", job_id)
        if result:
            raw = self.r.hgetall(key)
        else:  # every field but the result, which can be megabytes (a large job's file list)
            names = [f.name for f in fields(Job) if f.name != "result"]
            values = self.r.hmget(key, names)
            raw = {n.encode(): v for n, v in zip(names, values, strict=True) if v is not None}
        if not raw:
            return None
        job = self._decode(raw)
        if job is None:
            log.error("job %s has an incomplete record (fields %s): reported as gone", job_id, sorted(raw))
        return job

    def queue_position(self, job_id: str) -> int | None:
        rank = self.r.zrank(self._k("queued"), job_id)
        return int(rank) if rank is not None else None

    def list_jobs(
        self, owner: str, *, state: JobState | None = None, offset: int = 0, limit: int = 20
    ) -> tuple[list[Job], int]:
        if state is None:  # page in Redis; no need to read every record
            key = self._k("owner", owner)
            total = int(self.r.zcard(key))
            if offset >= total or limit < 1:  # also keeps Redis away from out-of-range indices
                return [], total
            page_ids = [i.decode() for i in self.r.zrevrange(key, offset, offset + limit - 1)]
            page = [j for j in (self.get(i, result=False) for i in page_ids) if j is not None]
            return page, total
        ids = [i.decode() for i in self.r.zrevrange(self._k("owner", owner), 0, -1)]
        jobs = [j for j in (self.get(i, result=False) for i in ids) if j is not None and j.state is state]
        return jobs[offset : offset + limit], len(jobs)

    def count_queued(self, owner: str) -> int:
        return int(self.r.zcard(self._k("queued", owner)))

    # -- updates ----------------------------------------------------------------------------------

    def transition(self, job_id: str, to: JobState, **fields: Any) -> Job:
        key = self._k("job", job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hgetall(key)
                    job = self._decode(raw) if raw else None
                    if job is None:
                        raise KeyError(job_id)
                    if to not in TRANSITIONS[job.state]:
                        raise TransitionRefusedError(
                            f"job {job_id} is {job.state.value}; cannot become {to.value}"
                        )
                    job.state = to
                    job.updated = time.time()
                    for name, value in fields.items():
                        setattr(job, name, value)
                    job.heartbeat = job.updated if to is JobState.RUNNING else None
                    pipe.multi()
                    pipe.hset(key, mapping=self._encode(job))
                    if to is JobState.QUEUED:  # handed to the next stage: back in line, by creation time
                        pipe.zadd(self._k("queued"), {job_id: job.created})
                        pipe.zadd(self._k("queued", job.owner), {job_id: job.created})
                    else:
                        pipe.zrem(self._k("queued"), job_id)
                        pipe.zrem(self._k("queued", job.owner), job_id)
                    if to in TERMINAL:
                        # A finished record outlives its files (retention, default = ttl_s) by ttl_s:
                        # the expiry pass still finds it, and the API says "expired", not 404.
                        pipe.expire(key, 2 * self.ttl_s)
                        pipe.zadd(self._k("finished"), {job_id: job.updated})
                        pipe.zrem(self._k("inflight", job.owner), job_id)
                    if to is JobState.SUCCEEDED and job.stored_bytes > 0:
                        pipe.zadd(self._k("stored", job.owner), {job_id: job.stored_bytes})
                    if to is JobState.RUNNING:
                        pipe.sadd(self._k("running"), job_id)
                    else:
                        pipe.srem(self._k("running"), job_id)
                    pipe.execute()
                    return job
                except redis.WatchError:
                    continue

    def update(self, job_id: str, **fields: Any) -> bool:
        mapping = {name: _field(name, value) for name, value in fields.items()}
        mapping["updated"] = repr(time.time())
        flat = [item for pair in mapping.items() for item in pair]
        return bool(self._update(keys=[self._k("job", job_id)], args=flat))

    def heartbeat(self, job_id: str, stage: str) -> bool:
        return bool(self._heartbeat(keys=[self._k("job", job_id)], args=[stage, repr(time.time())]))

    def stale_jobs(self, stale_after_s: float, *, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        stale = []
        for raw_id in self.r.smembers(self._k("running")):
            job_id = raw_id.decode()
            job = self.get(job_id)
            if job is None:
                self.r.srem(self._k("running"), job_id)
                continue
            if job.state is not JobState.RUNNING:
                continue
            if job.stage == GRAPH_STAGE:
                # Stale when one of its leases is (chunks waiting in a queue hold none), or when it has
                # no plan yet and its heartbeat is silent: only stats runs before the plan, and a stats
                # worker can die after taking its lease but before planning, or between the job's
                # transition and the lease (two steps here), leaving nothing else to go stale.
                raw = self.r.hgetall(self._k("graph", job_id))
                beats = [float(v.rsplit(b" ", 1)[1]) for k, v in raw.items() if k.startswith(b"lease:")]
                if any(now - beat > stale_after_s for beat in beats) or (
                    b"count" not in raw and now - (job.heartbeat or job.updated) > stale_after_s
                ):
                    stale.append(job)
            elif now - (job.heartbeat or job.updated) > stale_after_s:
                stale.append(job)
        return stale

    def reap(self, stale_after_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        reaped = []
        for job in self.stale_jobs(stale_after_s, now=now):
            try:
                silent = now - (job.heartbeat or job.updated)
                self.transition(job.id, JobState.FAILED, error=stale_error(silent))
                reaped.append(job.id)
            except (TransitionRefusedError, KeyError):
                pass
        return reaped

    # -- retention ----------------------------------------------------------------------------------

    def finished_before(self, cutoff: float, *, limit: int = 100) -> list[Job]:
        ids = [
            i.decode() for i in self.r.zrangebyscore(self._k("finished"), "-inf", f"({cutoff!r}", 0, limit)
        ]
        jobs = []
        for job_id in ids:
            job = self.get(job_id)
            if job is None or job.expired_at is not None or job.state not in TERMINAL:
                self.r.zrem(self._k("finished"), job_id)  # gone or done: off the worklist
                continue
            jobs.append(job)
        return jobs

    def mark_expired(self, job_id: str, at: float) -> bool:
        done = bool(self._expire(keys=[self._k("job", job_id)], args=[repr(float(at))]))
        self.r.zrem(self._k("finished"), job_id)
        owner = self.r.hget(self._k("job", job_id), "owner")
        if owner is not None:  # its files are gone: they no longer count (ZREM: at most once)
            self.r.zrem(self._k("stored", owner.decode()), job_id)
        return done

    def purge(self, job_id: str) -> bool:
        key = self._k("job", job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hgetall(key)
                    job = self._decode(raw) if raw else None
                    if job is None:
                        pipe.unwatch()
                        if raw:  # a partial hash: nothing to keep
                            self.r.delete(key)
                        return False
                    if job.state not in TERMINAL:
                        raise TransitionRefusedError(
                            f"job {job_id} is {job.state.value}; cancel it before purging"
                        )
                    pipe.multi()
                    pipe.delete(key)
                    pipe.zrem(self._k("owner", job.owner), job_id)
                    pipe.zrem(self._k("finished"), job_id)
                    pipe.zrem(self._k("queued"), job_id)
                    pipe.zrem(self._k("queued", job.owner), job_id)
                    pipe.srem(self._k("running"), job_id)
                    pipe.zrem(self._k("inflight", job.owner), job_id)
                    pipe.zrem(self._k("stored", job.owner), job_id)
                    pipe.delete(self._k("graph", job_id))
                    pipe.execute()
                    # The idempotency key naming it (if any) is released by the next create with it.
                    return True
                except redis.WatchError:
                    continue

    def set_archive(
        self, job_id: str, archive: dict[str, Any], *, unless: tuple[str, ...] = ()
    ) -> tuple[dict[str, Any] | None, bool]:
        # Its own field of the job hash, never in _encode: a transition cannot overwrite it, and a
        # purge or the record's expiry deletes it with the job.
        status, recorded = self._archive(keys=[self._k("job", job_id)], args=[json.dumps(archive), *unless])
        if int(status) == 0:
            return None, False
        return json.loads(recorded), int(status) == 2

    # -- the stage graph --------------------------------------------------------------------------

    def _graph_keys(self, job_id: str) -> list[str]:
        return [self._k("job", job_id), self._k("graph", job_id)]

    def plan_chunks(self, job_id: str, plan: ChunkPlan) -> ChunkPlan | None:
        totals = [item for pair in plan.totals().items() for item in pair]
        got = self._plan(keys=self._graph_keys(job_id),
                         args=[plan.count, plan.size, plan.subjects, 2 * self.ttl_s, *totals])  # fmt: skip
        if not got:
            return None
        count, size, subjects = (int(v) for v in got)
        return ChunkPlan(count, size, subjects)

    def take_chunk(self, job_id: str, kind: str, index: int, token: str, stale_after_s: float) -> str:
        job = self.get(job_id)
        if job is None or job.state in TERMINAL:
            return "gone"
        if job.state is JobState.QUEUED:
            # Taken by another task or cancelled meanwhile: the script below decides.
            with contextlib.suppress(TransitionRefusedError, KeyError):
                self.transition(job_id, JobState.RUNNING, stage=GRAPH_STAGE)
        args = [kind, index, token, repr(time.time()), repr(float(stale_after_s))]
        return str(self._take(keys=self._graph_keys(job_id), args=args).decode())

    def beat_chunk(self, job_id: str, kind: str, index: int, token: str) -> bool:
        args = [kind, index, token, repr(time.time())]
        return bool(self._beat(keys=self._graph_keys(job_id), args=args))

    def mark_stage(self, job_id: str, stage: str, index: int, subjects: int = 0) -> bool:
        raw = self.r.hget(self._k("graph", job_id), "count")
        if raw is None:
            return False
        plan = ChunkPlan(int(raw), 1, 1)  # only the totals matter here (from the count)
        totals = [item for pair in plan.totals().items() for item in pair]
        args = [stage, index, int(subjects), repr(time.time()), *totals]
        return bool(self._mark(keys=self._graph_keys(job_id), args=args))

    def finish_chunk(
        self, job_id: str, kind: str, index: int, token: str, seconds: float, worker: str
    ) -> int | None:
        args = [kind, index, token, repr(float(seconds)), worker.replace(" ", "_")]
        done = int(self._finish(keys=self._graph_keys(job_id), args=args))
        return None if done < 0 else done

    def graph(self, job_id: str) -> GraphState | None:
        raw = {k.decode(): v.decode() for k, v in self.r.hgetall(self._k("graph", job_id)).items()}
        if "count" not in raw:
            return None
        state = GraphState(ChunkPlan(int(raw["count"]), int(raw["size"]), int(raw["subjects"])), {}, {}, {},
                           int(raw.get("subjects_done") or 0))  # fmt: skip
        for field, value in raw.items():
            head, _, rest = field.partition(":")
            if head not in ("lease", "done", "t"):
                continue
            kind, _, index = rest.rpartition(":")
            if head == "lease":
                state.held[(kind, int(index))] = float(value.rsplit(" ", 1)[1])
            elif head == "done":
                state.done.setdefault(kind, set()).add(int(index))
            else:
                seconds, _, worker = value.partition(" ")
                state.seconds[(kind, int(index))] = (float(seconds), worker)
        return state

    def release_stale_chunks(
        self, job_id: str, stale_after_s: float, *, now: float | None = None
    ) -> list[tuple[str, int]]:
        now = time.time() if now is None else now
        ids = self._release_stale(keys=self._graph_keys(job_id), args=[repr(now - stale_after_s)])
        released = []
        for raw in ids:
            kind, _, index = raw.decode().rpartition(":")
            released.append((kind, int(index)))
        return sorted(released)

    # -- worker liveness --------------------------------------------------------------------------

    def worker_beat(self, queue: str, worker: str, ttl_s: float) -> None:
        self._worker_beat(keys=[self._k("workers", queue)], args=[worker, repr(float(ttl_s))])

    def worker_gone(self, queue: str, worker: str) -> None:
        self.r.zrem(self._k("workers", queue), worker)

    def live_workers(self) -> dict[str, int]:
        counts = self._live_workers(keys=[self._k("workers", q) for q in STAGES])
        return {q: int(n) for q, n in zip(STAGES, counts, strict=True)}

    def worker_live(self, queue: str, worker: str) -> bool:
        return bool(self._worker_live(keys=[self._k("workers", queue)], args=[worker]))
