"""Signed checkpoints of the audit chain's head, kept outside the database (issue 12, finding 7).

The hash chain alone shows an edit only to someone who cannot recompute hashes. A database
administrator who drops the append-only triggers can edit row n, recompute the hash of every
later row, and the chain is consistent again. A checkpoint pins the head as it was: the head's
sequence number and hash, and the time, signed with a key the database does not hold, appended
as one line to a file the database administrator cannot write (`checkpoints.jsonl` in
``Settings.audit_checkpoint_dir``, by default ``<var dir>/audit``). Verification then needs no
head from anyone: each checkpointed row must still carry the hash that was signed, so a rewrite
at or before the newest checkpoint is named, with the range of rows it lies in, and rows deleted
from the end are missed against the newest checkpoint. A rewrite after the newest checkpoint is
caught by the next one, which refuses to sign a head that does not descend from the last.

Ed25519, not HMAC: verifying needs only the public key, so an auditor, the SIEM or a second
site can check the checkpoints without being able to make them; with HMAC whoever can verify can
also forge. The private key (``TRIAGE_AUDIT_CHECKPOINT_KEY``, a Secret the application holds and
the database administrator does not) signs; in development a key is made in the var folder, as
the development token key is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.db.tables import AuditEntry
from service.security.audit import GENESIS_HASH, VerifyResult, entry_hash, verify_chain

log = logging.getLogger("triage.audit.checkpoints")

CHECKPOINT_FILE = "checkpoints.jsonl"
DEV_KEY_FILE = "audit-checkpoint-key.pem"


class CheckpointError(RuntimeError):
    """No key to sign with, or a chain that must not be signed."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # 0: the log was empty
    head: str
    at: str
    key_id: str
    signature: str = ""

    def payload(self) -> bytes:
        """The signed bytes: every field but the signature, in a fixed order."""
        fields = [self.seq, self.head, self.at, self.key_id]
        return json.dumps(fields, separators=(",", ":")).encode()


# ---- keys ----------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _parse_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError("TRIAGE_AUDIT_CHECKPOINT_KEY must be an Ed25519 private key")
    return key


def signing_key(settings: Settings, *, create: bool = True) -> Ed25519PrivateKey:
    """The configured key; outside production a key made once in the var folder (``create``)."""
    if settings.audit_checkpoint_key:
        try:
            return _parse_key(settings.audit_checkpoint_key)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(
                "TRIAGE_AUDIT_CHECKPOINT_KEY is not an Ed25519 key (PEM or 32 bytes base64)"
            ) from exc
    if settings.environment == "production":
        raise CheckpointError("TRIAGE_AUDIT_CHECKPOINT_KEY must be set in production")
    path = settings.var_dir / DEV_KEY_FILE
    if not path.exists() and not create:
        raise CheckpointError("no checkpoint key (nothing has been signed here yet)")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    return _parse_key(path.read_text(encoding="ascii"))


# ---- the file ------------------------------------------------------------------------------


def checkpoint_path(settings: Settings) -> Path:
    return settings.audit_checkpoint_dir_resolved / CHECKPOINT_FILE


def _append(path: Path, checkpoint: Checkpoint) -> None:
    """One line, opened for appending only and synced: earlier lines are never rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(checkpoint), separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(path: Path, public: Ed25519PublicKey) -> Iterator[Checkpoint]:
    """Every checkpoint in the file, each with its signature checked (CheckpointError if not)."""
    if not path.exists():
        return
    expected_key = key_id(public)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                checkpoint = Checkpoint(**json.loads(line))
                public.verify(base64.b64decode(checkpoint.signature), checkpoint.payload())
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise CheckpointError(
                    f"checkpoint line {number} is not signed by this key (the file was altered)"
                ) from exc
            if checkpoint.key_id != expected_key:
                raise CheckpointError(f"checkpoint line {number} names another key")
            yield checkpoint


# ---- writing -------------------------------------------------------------------------------


def _head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def _extend(session: Session, since: Checkpoint | None) -> tuple[int, str]:
    """The head the rows after ``since`` lead to, checked link by link (CheckpointError if not).

    With an earlier checkpoint only the rows added since are read, so a checkpoint costs
    little however long the log grows; the first checkpoint vouches for the whole chain.
    """
    table = AuditEntry.__table__
    prev_seq, prev_hash = (since.seq, since.head) if since else (0, GENESIS_HASH)
    if since is not None and since.seq:
        anchor = session.execute(select(table.c.hash).where(table.c.seq == since.seq)).scalar()
        if anchor != since.head:
            raise CheckpointError(
                f"audit row {since.seq} no longer carries the hash signed at {since.at}; "
                "not signing a rewritten chain"
            )
    rows = session.execute(
        select(table).where(table.c.seq > prev_seq).order_by(table.c.seq)
    ).yield_per(2000)
    for row in rows:
        if row.seq != prev_seq + 1 or row.prev_hash != prev_hash:
            raise CheckpointError(f"audit row {row.seq} does not follow row {prev_seq}")
        if entry_hash(row.seq, row.prev_hash, row) != row.hash:
            raise CheckpointError(f"audit row {row.seq} does not match its hash")
        prev_seq, prev_hash = row.seq, row.hash
    return prev_seq, prev_hash


def write_checkpoint(session: Session, settings: Settings) -> Checkpoint:
    """Sign the current head and append it; refuse when it does not descend from the last one."""
    key = signing_key(settings)
    path = checkpoint_path(settings)
    last = None
    for last in read_checkpoints(path, key.public_key()):  # noqa: B007 - the newest is wanted
        pass
    seq, head = _extend(session, last)
    unsigned = Checkpoint(
        seq=seq,
        head=head,
        at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        key_id=key_id(key.public_key()),
    )
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    checkpoint = Checkpoint(**{**asdict(unsigned), "signature": signature})
    _append(path, checkpoint)
    log.info("audit checkpoint written at seq %d", seq)
    return checkpoint


# ---- verifying -----------------------------------------------------------------------------


def verify_with_checkpoints(
    session: Session, settings: Settings, expected_head: str | None = None
) -> VerifyResult:
    """The chain, checked against every signed checkpoint; the newest one is the expected head."""
    path = checkpoint_path(settings)
    try:
        public = signing_key(settings, create=False).public_key()
        checkpoints = list(read_checkpoints(path, public))
    except CheckpointError as exc:
        if not path.exists():  # nothing signed yet: the chain is all there is to check
            return verify_chain(session, expected_head)
        result = verify_chain(session, expected_head)
        return VerifyResult(
            False, result.rows_checked, result.head_seq, result.head_hash, None, str(exc)
        )
    signed = {c.seq: c.head for c in checkpoints if c.seq}
    result = verify_chain(session, expected_head, checkpoints=signed)
    if not result.ok:
        return result
    newest = checkpoints[-1] if checkpoints else None
    if newest is not None and newest.seq > (result.head_seq or 0):
        return VerifyResult(
            False,
            result.rows_checked,
            result.head_seq,
            result.head_hash,
            (result.head_seq or 0) + 1,
            f"rows {(result.head_seq or 0) + 1}..{newest.seq} are missing: the checkpoint "
            f"signed at {newest.at} recorded the head at seq {newest.seq}",
        )
    result.checkpoint_seq = newest.seq if newest else None
    result.checkpoint_at = newest.at if newest else None
    return result
