"""What makes two requests identical: the key under which a release is replayed for free."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(engine: str, query: str, *parameters: Any) -> str:
    """Identical requests share a fingerprint: same engine, normalized query, parameters.

    The normalized query comes from the parsed query (SQL text rebuilt from its syntax tree,
    or the canonical JSON of an OpenDP query), so whitespace, keyword case and spelling do not
    matter; a different epsilon, delta, rho or option does.
    """
    canonical = json.dumps(
        [engine, query, *[repr(float(p)) if isinstance(p, float) else p for p in parameters]]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
