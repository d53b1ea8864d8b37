"""Thread ids: one per call-chain position in a run, the same for the same chain."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ("thread_id",)


def thread_id(run_id: str, chain: Sequence[str]) -> str:
    """The id of ``chain`` within ``run_id``, shaped like a UUID.

    Content-addressed within a run (a caller that calls the same listener twice
    from the same place gets the same thread), and disjoint across runs because
    the run id is hashed in (D1). Names are joined with a separator that cannot
    occur in them, so dotted listener names stay distinct (D2).
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(run_id.encode())
    for name in chain:
        digest.update(b"\x00")
        digest.update(name.encode())
    text = digest.hexdigest()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
