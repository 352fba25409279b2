"""S3-compatible backup target (built-in plugin, needs the ``s3`` extra: boto3).

URL: ``s3://BUCKET/PREFIX?endpoint_url=https://…&region=…``. Credentials come
from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance roles), never from the URL. Objects are uploaded
with multipart uploads of bounded part size: an object appears only once
complete, so an interrupted upload leaves nothing under its name.
"""

from __future__ import annotations

from typing import IO, Any, Iterator
from urllib.parse import parse_qsl, urlparse

from tradeguard.backup.targets import check_name
from tradeguard.errors import ConfigError, NotFound, TradeguardError
from tradeguard.hookspecs import hookimpl

PART_SIZE = 8 << 20
_ALLOWED_QUERY = {"endpoint_url", "region"}


class S3Target:
    """Backups kept under a prefix of an S3 (or S3-compatible) bucket."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigError(f"backup target {url!r}: expected s3://BUCKET/PREFIX[?endpoint_url=…&region=…]")
        if parsed.username or parsed.password:
            raise ConfigError("backup target: put S3 credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not in the URL")
        query = dict(parse_qsl(parsed.query))
        unknown = set(query) - _ALLOWED_QUERY
        if unknown:
            raise ConfigError(f"backup target {url!r}: unknown option(s) {', '.join(sorted(unknown))}")
        self.url = url
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = query.get("endpoint_url")
        self.region = query.get("region")
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3Target({self.url!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError("s3 backup targets need boto3: pip install 'tradeguard[s3]'") from None
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
        return self._client

    def _error(self, exc: Exception, action: str, name: str = "") -> TradeguardError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"no object {name} in {self.url}")
        if code == "NoSuchBucket":
            return TradeguardError(f"backup target {self.url}: bucket {self.bucket} does not exist")
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return TradeguardError(f"backup target {self.url}: {action} failed: {first}")

    def put(self, name: str, stream: IO[bytes]) -> int:
        """Upload *stream* (multipart, 8 MiB parts, bounded memory); return the byte count."""
        from boto3.s3.transfer import TransferConfig

        check_name(name)
        counted = _Counting(stream)
        config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=2)
        try:
            self.client.upload_fileobj(counted, self.bucket, self.prefix + name, Config=config)
        except TradeguardError:
            raise
        except Exception as exc:
            raise self._error(exc, "upload", name) from None
        return counted.count

    def get(self, name: str) -> IO[bytes]:
        check_name(name)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        except Exception as exc:
            raise self._error(exc, "download", name) from None

    def list(self) -> Iterator[str]:
        names = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    rest = item["Key"][len(self.prefix):]
                    if rest and "/" not in rest and not rest.startswith("."):
                        names.append(rest)
        except Exception as exc:
            raise self._error(exc, "listing") from None
        return iter(sorted(names))

    def delete(self, name: str) -> None:
        check_name(name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + name)
        except Exception as exc:
            raise self._error(exc, "delete", name) from None

    def remove_partials(self, older_than: float = 3600.0) -> list[str]:
        """Abort multipart uploads under the prefix that an interrupted backup left behind."""
        import datetime as dt

        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=older_than)
        removed = []
        try:
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix).get("Uploads", [])
            for upload in uploads:
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed.append(upload["Key"][len(self.prefix):])
        except Exception as exc:
            raise self._error(exc, "cleaning up uploads") from None
        return removed


class _Counting:
    """A read-only file that counts the bytes read through it (boto3 reads it in parts)."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """Exactly *size* bytes unless the stream ends (boto3 makes one part per read)."""
        if size is None or size < 0:
            data = self.inner.read()
        else:
            parts, need = [], size
            while need > 0:
                piece = self.inner.read(need)
                if not piece:
                    break
                parts.append(piece)
                need -= len(piece)
            data = b"".join(parts)
        self.count += len(data)
        return data


@hookimpl
def register_backup_targets(register):
    """The ``s3`` scheme (boto3 imported only when a target is used)."""
    register("s3", S3Target)
