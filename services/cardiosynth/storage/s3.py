"""S3-compatible object storage through boto3 (AWS, MinIO, moto).

Two clients: one on the internal endpoint the workers reach (``http://minio:9000`` in compose) for
reads and writes, and one on the public endpoint the user's machine reaches, used only to presign.
SigV4 signs the host, so a URL presigned for ``minio:9000`` and rewritten to ``localhost:9000``
fails its signature check; presigning with a client on the public endpoint makes it valid there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from cardiosynth.storage.base import StorageError, check_key, content_type


class S3Store:
    """Object store over one S3 bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        path_style: bool = True,
        prefix: str = "",
    ) -> None:
        if not bucket:
            raise ValueError("bucket must be named")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        common: dict[str, Any] = {
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": config,
        }
        self._client = boto3.client("s3", endpoint_url=endpoint_url, **common)
        self._public = boto3.client("s3", endpoint_url=public_endpoint_url or endpoint_url, **common)

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            # No ContentEncoding: a .nii.gz must arrive as the gzip file it is (see content_type).
            self._client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, ContentType=content_type(key)
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store {key}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> None:
        try:
            # Multipart above boto3's threshold, read from disk a part at a time; S3 shows the object
            # only once the upload completes, so a reader never sees half of it.
            self._client.upload_file(
                str(path), self.bucket, self._full(key), ExtraArgs={"ContentType": content_type(key)}
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store {key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise StorageError(f"could not read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not read {key}: {exc}") from exc
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"could not check {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not check {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete {key}: {exc}") from exc

    def list_keys(self, prefix: str = "") -> list[str]:
        full = self._full(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        keys: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not list {prefix!r}: {exc}") from exc
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in keys)

    def download_url(self, key: str, expires_s: int) -> str:
        if expires_s < 1:
            raise ValueError(f"expires_s must be positive, got {expires_s}")
        url: str = self._public.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=expires_s
        )
        return url

    def ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (compose and tests; production buckets pre-exist)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.bucket)
