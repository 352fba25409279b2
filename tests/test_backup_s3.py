"""The S3 backup target against moto's S3 server on loopback."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from backup_helpers import PASSPHRASE, fill
from tradeguard import Engine

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "tradeguard-backups"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for this module (dummy credentials, never real AWS)."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_s3_round_trip_listing_and_prune(s3_endpoint, home, tmp_path, sqlite_cli):
    target = f"s3://{BUCKET}/prod/bot1?endpoint_url={s3_endpoint}"
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, master_key=PASSPHRASE, load_entrypoints=False) as engine:
        fill(engine, accounts=2, blob_kb=12 * 1024)  # > one 8 MiB multipart part after compression
        first = engine.backups.create(target)
        second = engine.backups.create(target)
        assert first["size"] > 8 << 20
        assert engine.backups.verify(first["id"], target)["checks"]["sha256"] == "ok"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="prod/bot1/")["Contents"])
    assert keys == sorted(f"prod/bot1/{b['id']}{s}" for b in (first, second) for s in (".tgb", ".tgm"))

    # an interrupted multipart upload is invisible to listing
    client.create_multipart_upload(Bucket=BUCKET, Key="prod/bot1/tg-20260101T000000Z-00000000.tgb")
    env = {"TRADEGUARD_MASTER_KEY": PASSPHRASE}
    listed = sqlite_cli.json("backup", "list", "--target", target, env=env)
    assert [(b["id"], b["status"]) for b in listed] == [(second["id"], "ok"), (first["id"], "ok")]

    restored = sqlite_cli.json("backup", "restore", first["id"], "--target", target, "--to", str(tmp_path / "r.db"), env=env)
    assert restored["checks"]["audit"] == "ok" and (tmp_path / "r.db").exists()

    pruned = sqlite_cli.json("backup", "prune", "--keep-last", "1", "--target", target, env=env)
    assert pruned["remove"] == [] and {k["id"] for k in pruned["keep"]} == {first["id"], second["id"]}  # first is verified
    with Engine.open(f"sqlite:///{home / 'tradeguard.db'}", home=home, master_key=PASSPHRASE, load_entrypoints=False) as engine:
        engine.backups.verify(second["id"], target)  # now the newest verified is the newest
    pruned = sqlite_cli.json("backup", "prune", "--keep-last", "1", "--target", target, env=env)
    assert pruned["remove"] == [first["id"]]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="prod/bot1/")["Contents"])
    assert keys == [f"prod/bot1/{second['id']}.tgb", f"prod/bot1/{second['id']}.tgm"]


def test_s3_errors_are_one_line(s3_endpoint, home, sqlite_cli):
    env = {"TRADEGUARD_MASTER_KEY": PASSPHRASE}
    missing = sqlite_cli("backup", "list", "--target", f"s3://no-such-bucket/x?endpoint_url={s3_endpoint}", env=env)
    assert missing.exit_code == 1 and "bucket no-such-bucket does not exist" in missing.output
    creds = sqlite_cli("backup", "list", "--target", f"s3://user:pw@{BUCKET}/x", env=env)
    assert creds.exit_code == 2 and "not in the URL" in creds.output and "pw" not in creds.output.replace("pwd", "")
