"""The stand-in's minio-init: create the stack's bucket once (an existing bucket is kept as it is).

Run in the moto image by docker-compose.moto.yml; reads S3_ENDPOINT_URL, S3_BUCKET and the MinIO root
credentials the main compose file passes to minio-init."""

from __future__ import annotations

import logging
import os

import boto3
from botocore.exceptions import ClientError

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("s3-standin-init")

endpoint = os.environ["S3_ENDPOINT_URL"]
bucket = os.environ.get("S3_BUCKET", "cardiosynth")
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id=os.environ["MINIO_ROOT_USER"],
    aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"],
)
try:
    s3.head_bucket(Bucket=bucket)
    log.info("bucket %s exists at %s", bucket, endpoint)
except ClientError:
    s3.create_bucket(Bucket=bucket)
    log.info("bucket %s created at %s", bucket, endpoint)
