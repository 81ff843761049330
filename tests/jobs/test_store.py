"""What only the Redis store has; the shared behaviour is in test_contract.py."""

from __future__ import annotations

import hashlib

import pytest
import redis

from cardiosynth.jobs.base import IdempotencyInProgressError, owner_id, request_hash
from cardiosynth.jobs.store import RedisJobStore


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> RedisJobStore:
    return RedisJobStore(redis.Redis.from_url(redis_url), prefix=redis_prefix)


def test_listing_beyond_redis_integer_range(store: RedisJobStore) -> None:
    store.create("bob", {"pathology": "RV", "n": 1})
    assert store.list_jobs("bob", offset=1)[0] == []
    assert store.list_jobs("bob", offset=10**20) == ([], 1)


def test_a_pending_claim_of_an_earlier_version_is_409(store: RedisJobStore) -> None:
    body = {"pathology": "HCM", "n": 5}
    store.r.set(f"{store.prefix}:idem:carol:" + hashlib.sha256(b"k2").hexdigest(),
                f"abc {request_hash(body)} pending")  # fmt: skip
    with pytest.raises(IdempotencyInProgressError):
        store.create("carol", body, idempotency_key="k2")


def test_records_expire_with_the_ttl(store: RedisJobStore) -> None:
    job, _ = store.create("alice", {"n": 1}, idempotency_key="k")
    assert 0 < store.r.ttl(store._k("job", job.id)) <= store.ttl_s
    assert 0 < store.r.ttl(store._k("idem", "alice", hashlib.sha256(b"k").hexdigest())) <= store.ttl_s


def test_owner_ids_hide_keys() -> None:
    assert owner_id("secret-key") != "secret-key"
    assert owner_id("secret-key") == owner_id("secret-key")
    assert request_hash({"a": 1, "b": 2}) == request_hash({"b": 2, "a": 1})
