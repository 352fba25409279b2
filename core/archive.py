"""Archiving the audit trail with proof of what was archived (``tradeguard audit archive``).

The audit log is never deleted. An archive is a copy for cold storage or an
auditor, made of two files:

* ``NAME.jsonl`` — entries 1 … N, one JSON object per line with every column
  exactly as stored (the format of ``audit export``, so the standalone
  verifier in docs/audit.md reads it);
* ``NAME.manifest.json`` — N, the head hash, the file's SHA-256 and the sealed
  checkpoint written for the archive (an HMAC under the audit key over N and
  the head hash).

The archive is itself recorded in the chain (``audit.archive``: file name,
SHA-256, range), after the checkpoint. `check_archive` recomputes every hash
and link of the file, compares it with the manifest, and — given the Engine —
that the database still holds that checkpoint and that head at N (with the
vault unlocked, that the checkpoint's seal is genuine).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from tradeguard import audit
from tradeguard.audit.chain import GENESIS, checkpoint_seal, entry_hash
from tradeguard.clock import isoformat, utcnow
from tradeguard.errors import IntegrityError, ValidationError
from tradeguard.storage import redact_url, use_database
from tradeguard.storage.models import AuditCheckpoint, AuditLog

COLUMNS = ("seq", "ts", "actor", "action", "subject", "payload", "prev_hash", "hash", "seal", "key_id")
BATCH = 5000
FORMAT = "tradeguard-audit-archive/1"


def manifest_path(path: Path) -> Path:
    """``x.jsonl`` -> ``x.manifest.json``."""
    return path.with_name(path.name[: -len(".jsonl")] + ".manifest.json" if path.name.endswith(".jsonl")
                          else path.name + ".manifest.json")


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def _create_private(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValidationError(f"{path} already exists: archives are never overwritten") from None
    except OSError as exc:
        raise ValidationError(f"cannot create {path}: {exc.strerror}") from None


def archive_audit(engine: Any, out: str | os.PathLike[str], *, actor: str = "cli") -> dict[str, Any]:
    """Seal the head with a checkpoint and write entries 1 … head to *out* (JSONL, 0600) and its manifest.

    Needs the vault unlocked (the checkpoint is sealed with the audit key). Returns the manifest.
    """
    path = Path(out)
    if not path.name.endswith(".jsonl"):
        raise ValidationError(f"{path}: the archive file name must end in .jsonl")
    sidecar = manifest_path(path)
    cp = engine.audit.checkpoint("archive")
    digest = hashlib.sha256()
    count = 0
    fd = _create_private(path)
    try:
        with os.fdopen(fd, "wb") as fh, use_database(engine.db):
            after = 0
            while after < cp.seq:
                rows = list(AuditLog.select(*[getattr(AuditLog, c) for c in COLUMNS])
                            .where((AuditLog.seq > after) & (AuditLog.seq <= cp.seq))
                            .order_by(AuditLog.seq).limit(BATCH).tuples())
                if not rows:
                    break
                for row in rows:
                    data = _line(dict(zip(COLUMNS, row)))
                    digest.update(data)
                    fh.write(data)
                    count += 1
                after = rows[-1][0]
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    with use_database(engine.db):
        row = (AuditCheckpoint.select().where((AuditCheckpoint.seq == cp.seq) & (AuditCheckpoint.reason == "archive"))
               .order_by(AuditCheckpoint.id.desc()).first())
    manifest = {
        "format": FORMAT,
        "file": path.name,
        "sha256": digest.hexdigest(),
        "entries": count,
        "first_seq": 1 if count else None,
        "last_seq": cp.seq,
        "head_hash": cp.head_hash,
        "checkpoint": {"seq": row.seq, "head_hash": row.head_hash, "seal": row.seal, "key_id": row.key_id,
                       "reason": row.reason, "created_at": isoformat(row.created_at)},
        "database": redact_url(engine.url),
        "archived_at": isoformat(utcnow()),
    }
    fd = _create_private(sidecar)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    with use_database(engine.db), engine.db.atomic():
        audit.append(actor, "audit.archive", "audit", {"file": path.name, "sha256": manifest["sha256"],
                                                       "first_seq": manifest["first_seq"], "last_seq": cp.seq,
                                                       "head_hash": cp.head_hash})
    return manifest


def check_archive(path: str | os.PathLike[str], engine: Any = None) -> dict[str, Any]:
    """Verify an archive file against its manifest (and the database, given *engine*).

    Raises IntegrityError naming the first problem; returns a summary when all holds.
    """
    path = Path(path)
    sidecar = manifest_path(path)
    try:
        manifest = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"no manifest {sidecar} next to {path}") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{sidecar} is not a readable manifest: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"{sidecar}: unknown archive format {manifest.get('format')!r}")
    digest = hashlib.sha256()
    prev, last, count = GENESIS, None, 0
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise ValidationError(f"no archive file {path}") from None
    with fh:
        for number, data in enumerate(fh, 1):
            digest.update(data)
            try:
                e = json.loads(data)
                fields = (e["seq"], e["ts"], e["actor"], e["action"], e["subject"], e["payload"], e["prev_hash"])
            except (ValueError, KeyError, TypeError):
                raise IntegrityError(f"{path} line {number}: not an audit entry") from None
            if e["seq"] != number:
                raise IntegrityError(f"{path} line {number}: entry {e['seq']} is out of place (missing or reordered)")
            if e["prev_hash"] != prev:
                raise IntegrityError(f"{path}: entry {e['seq']} does not link to the entry before it")
            if entry_hash(*fields) != e["hash"]:
                raise IntegrityError(f"{path}: entry {e['seq']} was changed (its hash does not match its columns)")
            prev, last, count = e["hash"], e["seq"], count + 1
    if digest.hexdigest() != manifest["sha256"]:
        raise IntegrityError(f"{path}: SHA-256 differs from the manifest (the file was changed)")
    if count != manifest["entries"] or (last or 0) != manifest["last_seq"] or prev != manifest["head_hash"]:
        raise IntegrityError(f"{path}: ends at entry {last} {prev[:16]}…, the manifest says "
                             f"{manifest['last_seq']} {manifest['head_hash'][:16]}…")
    summary = {"file": str(path), "entries": count, "last_seq": last, "head_hash": prev, "database_checked": False,
               "seal_checked": False}
    if engine is not None:
        cp = manifest["checkpoint"]
        with use_database(engine.db):
            stored = AuditCheckpoint.get_or_none((AuditCheckpoint.seq == cp["seq"]) & (AuditCheckpoint.seal == cp["seal"]))
            entry = AuditLog.get_or_none(AuditLog.seq == manifest["last_seq"])
        if stored is None or stored.head_hash != prev:
            raise IntegrityError(f"the database holds no checkpoint at entry {cp['seq']} matching this archive")
        if entry is None or entry.hash != prev:
            raise IntegrityError(f"the database's entry {manifest['last_seq']} is not the archive's head: "
                                 "history was rewritten since the archive")
        summary["database_checked"] = True
        if not engine.vault.locked:
            key = engine.vault.key(stored.key_id).material
            expected = checkpoint_seal(key, stored.seq, stored.head_hash, stored.reason)
            if not hmac.compare_digest(expected, stored.seal):
                raise IntegrityError(f"the checkpoint at entry {stored.seq} has a bad seal")
            summary["seal_checked"] = True
    return summary
