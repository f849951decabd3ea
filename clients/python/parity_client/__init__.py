"""parity_client: a Python client for a parity server, for researchers and auditors.

Sampling in OpenAI's shapes, an nnsight-like tracing context over /v1/internals/trace,
fine-tuning jobs, the caller's access and the parity report, and verification of everything
the lab signs: receipts against the audit log, the policy log's consistency, witness
cosignatures, and the parity report recomputed from the policy log. Standard library only;
numpy is used for activations when it is installed."""
from .client import (APIError, AuthenticationError, BadRequestError, Client, NotFoundError, Obj,
                     PermissionDeniedError, RateLimitError, Receipt, Stream)
from .note import Checkpoint, Verifier, VerificationError, cosign, make_vkey
from .tlog import Log
from .trace import Model, Saved, TraceError

__version__ = "0.1.0"
__all__ = ["APIError", "AuthenticationError", "BadRequestError", "Checkpoint", "Client", "Log", "Model",
           "NotFoundError", "Obj", "PermissionDeniedError", "RateLimitError", "Receipt", "Saved", "Stream",
           "TraceError", "VerificationError", "Verifier", "cosign", "make_vkey"]
