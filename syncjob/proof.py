"""Pure: the proof that a Secret is a copy this SecretSync wrote, which a tenant cannot forge.

Labels and annotations are claims anyone who may create Secrets can make. A copy also carries an
HMAC of where it sits, which instance wrote it and which source it copies, keyed with a random key
kept in a Secret in the source namespace (which tenants cannot read). A labelled Secret whose proof
does not verify is reported and never updated, deleted or counted by the mass-deletion guard.
"""

from __future__ import annotations

import hashlib
import hmac

from syncjob.model import Ref

PROOF_KEY_SECRET = "syncjob-proof-key"  # in each source namespace; made by the first run that needs it
PROOF_KEY_FIELD = "key"
PROOF_KEY_LABEL = "syncjob.dev/proof-key"


def proof(key: bytes, instance: str, copy: Ref, owner: Ref, owner_uid: str) -> str:
    """The value of a copy's syncjob.dev/proof annotation."""
    message = "\n".join((instance, copy.namespace, copy.name, owner.namespace, owner.name, owner_uid))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def verifies(key: bytes | None, claimed: str, *, instance: str, copy: Ref, owner: Ref, owner_uid: str) -> bool:
    if key is None or not claimed:
        return False
    return hmac.compare_digest(proof(key, instance, copy, owner, owner_uid), claimed)
