"""``meshwright agent a2a CARD_URL``: serve an external A2A agent as a meshwright agent.

Every flag of ``meshwright agent run`` but MODULE:ATTR and ``--app-dir``, plus the
bridge's own. Nothing here imports a2a-sdk until the command runs, so building the
agent CLI's parser stays as light as importing ``meshwright.agent``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from meshwright.agent.agent import Agent
from meshwright.agent.cli import AgentLoadError, add_serve_arguments, run_command
from meshwright.mesh.config import env_default

log = logging.getLogger(__name__)

TOKEN_ENV = "MESHWRIGHT_A2A_TOKEN"
"""The A2A agent's bearer token (or a file holding it: ``MESHWRIGHT_A2A_TOKEN_FILE``)."""

CARD_FETCH_TIMEOUT_S = 10.0

DESCRIPTION = """Serve an external A2A agent as an agent of the mesh: its card is read from
CARD_URL, each of its skills becomes a skill here (schedulable in workflows, retried, paid
to this agent's account, traced), and each task is sent to it over A2A with a2a-sdk. Like
`run`, it prints a READY line once registered. Exit code 2: CARD_URL gives no usable card
(not JSON, no skills, no transport a2a-sdk speaks); 1: it cannot be reached."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``a2a``."""
    parser.add_argument(
        "card_url",
        metavar="CARD_URL",
        help="the A2A agent's card URL, or its base URL (the card is then read from "
        "/.well-known/agent-card.json)",
    )
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="SKILL=N",
        help="price of a skill (its A2A id or its meshwright id) per finished task, in minor "
        "units; beats the card's pricing extension; repeatable",
    )
    parser.add_argument(
        "--default-price",
        type=int,
        default=_int_or_none(env_default("a2a_default_price", None)),
        metavar="N",
        help="price of the skills neither --price nor the card prices; 0 when not given "
        "(env MESHWRIGHT_A2A_DEFAULT_PRICE)",
    )
    parser.add_argument(
        "--a2a-timeout",
        type=float,
        default=float(env_default("a2a_timeout_s", 300.0)),
        metavar="S",
        help="seconds one A2A task may take end to end, and each HTTP request "
        "(env MESHWRIGHT_A2A_TIMEOUT_S)",
    )
    parser.add_argument(
        "--a2a-token-file",
        default=env_default("a2a_token_file", None),
        metavar="FILE",
        help="file holding the bearer token sent to the A2A agent (env "
        f"MESHWRIGHT_A2A_TOKEN_FILE, or the token itself in {TOKEN_ENV}); none by default",
    )
    parser.add_argument(
        "--skill-prefix",
        default=env_default("a2a_skill_prefix", ""),
        metavar="PREFIX",
        help="put before every skill id, e.g. 'ext.' (env MESHWRIGHT_A2A_SKILL_PREFIX)",
    )
    parser.add_argument("--name", default="", help="agent name; the card's by default")
    parser.add_argument(
        "--capacity",
        type=int,
        default=int(env_default("a2a_capacity", 16)),
        help="A2A tasks run at once, 0 unlimited (env MESHWRIGHT_A2A_CAPACITY)",
    )
    add_serve_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve the bridge until SIGTERM/SIGINT; the exit code (2 bad input, 1 unreachable)."""
    return run_command(args, load=load_bridge)


def load_bridge(args: argparse.Namespace) -> Agent:
    """The bridge agent for ``args.card_url``: the card fetched, checked and mapped."""
    from meshwright.agent.a2a.inbound import BridgeOptions, CardError, bridge_agent, fetch_card

    # Both log every request (and the resolver the whole card) at INFO: one line per task
    # would drown the bridge's own log. --log-level DEBUG shows them again.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for noisy in ("httpx", "a2a"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.a2a_timeout <= 0:
        raise AgentLoadError("--a2a-timeout must be positive")
    if args.default_price is not None and args.default_price < 0:
        raise AgentLoadError("--default-price must not be negative")
    options = BridgeOptions(
        prices=parse_prices(args.price),
        default_price=args.default_price,
        timeout_s=args.a2a_timeout,
        token=read_token(args.a2a_token_file),
        skill_prefix=args.skill_prefix,
        name=args.name,
        capacity=args.capacity,
    )
    try:
        card, card_url = asyncio.run(
            fetch_card(
                args.card_url,
                token=options.token,
                timeout_s=min(CARD_FETCH_TIMEOUT_S, options.timeout_s),
            )
        )
        agent = bridge_agent(card, card_url=card_url, options=options)
    except CardError as err:
        raise AgentLoadError(str(err), exit_code=err.exit_code) from None
    except ValueError as err:
        raise AgentLoadError(str(err)) from None
    log.info(
        "bridging A2A agent %r at %s: %s",
        card.name,
        card_url,
        ", ".join(f"{s.id} ({s.price})" for s in agent.skills.values()),
    )
    return agent


def parse_prices(values: list[str]) -> dict[str, int]:
    """``--price SKILL=N`` values as a table; AgentLoadError for a malformed one."""
    prices: dict[str, int] = {}
    for value in values:
        skill, sep, raw = value.partition("=")
        try:
            price = int(raw)
        except ValueError:
            price = -1
        if not sep or not skill or price < 0:
            raise AgentLoadError(f"--price {value!r}: expected SKILL=N with N a whole number >= 0")
        prices[skill] = price
    return prices


def read_token(token_file: str | None) -> str:
    """The A2A bearer token: ``token_file``'s contents, else ``MESHWRIGHT_A2A_TOKEN``, else
    "". Never from the command line, where every user of the machine could read it."""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as err:
            raise AgentLoadError(
                f"--a2a-token-file {token_file!r}: {err.strerror or err}"
            ) from None
        if not token:
            raise AgentLoadError(f"--a2a-token-file {token_file!r} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip()


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(str(value))
