"""Object storage behind one interface: S3 (boto3; MinIO in compose) or a local directory."""

from cardiosynth.storage.base import ObjectStore, StorageError, check_key, content_type
from cardiosynth.storage.local import LocalStore

__all__ = ["LocalStore", "ObjectStore", "StorageError", "check_key", "content_type"]
