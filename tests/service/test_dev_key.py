"""The development signing key is created once, even by processes starting together."""

import multiprocessing as mp
from pathlib import Path

from cryptography.hazmat.primitives import serialization


def _public_key(path: str, out: "mp.Queue[bytes]") -> None:
    from service.security.tokens import load_or_create_dev_key

    key = load_or_create_dev_key(Path(path))
    out.put(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_concurrent_workers_share_one_key(tmp_path):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    path = str(tmp_path / "var" / "dev-signing-key.pem")
    workers = [ctx.Process(target=_public_key, args=(path, out)) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    keys = {out.get(timeout=10) for _ in workers}
    assert len(keys) == 1
    assert (tmp_path / "var" / "dev-signing-key.pem").stat().st_mode & 0o777 == 0o600
