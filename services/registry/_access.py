"""Who may act on a registration, and who may see its lease id.

The access policy in the contract already refuses an agent that names another
agent's id (``NOT_OWNER``); the registry checks again here, from the per-call
context, so the rule holds however the registry is served (in-process, another
policy, a future transport) and so the rules the policy cannot express
(the payout account, lease visibility) live next to it.

A caller of None is internal work outside any RPC (the composition root, the
sweeper, tests calling the domain): trusted, like the process itself.
"""

from __future__ import annotations

from meshwright.mesh.auth import ANONYMOUS_ADMIN, Principal, Role
from meshwright.mesh.policy import NotOwner
from meshwright.registry.errors import PayoutNotOwn
from meshwright.registry.v1 import registry_pb2


def own_agent_id(who: Principal | None, agent_id: str) -> str:
    """The id to register under: an agent that names none registers as its token's subject.

    Never a generated id for an agent: the id is what binds the registration,
    its heartbeats and its pay to the token, so an agent is always itself.
    """
    if not agent_id and who is not None and who.role is Role.AGENT:
        return who.subject
    return agent_id


def require_self(who: Principal | None, agent_id: str) -> None:
    """``NotOwner`` unless ``who`` may act on ``agent_id``: the agent itself, an admin, the mesh."""
    if who is None or who.is_trusted:
        return
    if who.role is Role.AGENT and who.subject == agent_id:
        return
    raise NotOwner(
        f"agent_id: agent {agent_id!r} is not the caller's (agents act only as themselves)",
        metadata={"field": "agent_id"},
    )


def require_own_payout(who: Principal | None, agent_id: str, payout_account_id: str) -> None:
    """``PayoutNotOwn`` when an agent names a payout account other than its own.

    Its own is the account named after it (empty means that one too); admins,
    the mesh and internal callers may name any account.
    """
    if who is None or who.is_trusted:
        return
    if payout_account_id and payout_account_id != agent_id:
        raise PayoutNotOwn(
            f"payout_account_id: an agent is paid into its own account {agent_id!r} only "
            "(leave it empty); an admin may register another one",
            metadata={"field": "payout_account_id"},
        )


def sees_lease(who: Principal | None, agent_id: str) -> bool:
    """Whether ``who`` may read the lease id of ``agent_id`` (GetAgent, ListAgents, watches).

    Only the agent principal of that id may: the agent holds its lease. (The
    RegisterAgent response always carries the lease it grants, to its caller,
    who is its holder, and a Heartbeat response echoes the lease its caller
    presented; neither tells anyone something new.) Internal callers see it
    (they are the process). With auth off every caller is the anonymous admin
    and sees it: nobody is told apart there, anyone may heartbeat any agent
    anyway, so hiding it would protect nothing and only break tooling. Checked
    by identity, so a real admin token whose subject happens to be "anonymous"
    does not count as auth being off.
    """
    if who is None or who is ANONYMOUS_ADMIN:
        return True
    return who.role is Role.AGENT and who.subject == agent_id


def shown(agent: registry_pb2.Agent, who: Principal | None) -> registry_pb2.Agent:
    """``agent`` as ``who`` may see it: lease id cleared unless it holds the lease.

    Clears in place: pass a message that belongs to this response.
    """
    if agent.lease_id and not sees_lease(who, agent.agent_id):
        agent.lease_id = ""
    return agent
