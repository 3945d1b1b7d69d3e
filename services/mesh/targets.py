"""A service at one address or several: ``host:port`` or ``host1:port,host2:port``.

Every ``--*-target`` and ``--registry`` address a process is given may list
replicas; with more than one, calls are balanced across them and kept away from
a dead one (``BalancedClient``: power of two choices, a breaker per replica), so
an agent keeps heartbeating and a workflow service keeps paying when one
registry or economy replica dies.
"""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from meshwright.mesh.client import ChannelPool, ServiceClient


def split_targets(targets: str) -> list[str]:
    """The addresses of a comma-separated target list (blanks dropped)."""
    return [t.strip() for t in targets.split(",") if t.strip()]


def service_client(pool: ChannelPool, targets: str, service: ServiceDescriptor) -> ServiceClient:
    """A client of ``service`` at ``targets``: direct for one address, balanced for several.

    The caller closes ``pool``; a balanced client's endpoint channels live in it.
    """
    addresses = split_targets(targets)
    if not addresses:
        raise ValueError(f"no address in target {targets!r}")
    if len(addresses) == 1:
        return pool.client(addresses[0], service)
    from meshwright.mesh.balancer import BalancedClient, StaticEndpoints

    return BalancedClient(service, StaticEndpoints(addresses), pool)
