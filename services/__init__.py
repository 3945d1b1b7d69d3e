"""meshwright: a gRPC service mesh for AI agents.

Contracts live in ``meshwright.<domain>.v1`` (generated), runtimes in
``meshwright.<domain>``, the shared runtime in ``meshwright.mesh``.
"""

__version__ = "0.1.0"
