"""``EconomyService`` over gRPC: parse the request, call ``Economy``, build the response.

Errors are ``MeshError``s raised by the domain; ``MeshServer`` maps them to
rich statuses, so no method here sets a status code.
"""

from __future__ import annotations

from meshwright.economy._messages import account_pb, escrow_pb, proposal_pb, transaction_pb
from meshwright.economy.economy import Economy
from meshwright.economy.model import Account
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh.context import caller
from meshwright.mesh.validation import duration_s

ECONOMY_SERVICE = pb.DESCRIPTOR.services_by_name["EconomyService"]
"""The service descriptor to pass to ``MeshServer.add`` and the clients."""


class EconomyServicer:
    """Serves ``meshwright.economy.v1.EconomyService`` from an ``Economy``."""

    def __init__(self, economy: Economy) -> None:
        self.economy = economy

    async def CreateAccount(self, request: pb.CreateAccountRequest) -> pb.CreateAccountResponse:
        account = await self.economy.create_account(
            request.account_id,
            display_name=request.display_name,
            initial_balance=request.initial_balance,
            request_id=request.request_id,
            owner=request.owner,
        )
        return pb.CreateAccountResponse(account=account_pb(account, self.economy.tiers))

    async def GetAccount(self, request: pb.GetAccountRequest) -> pb.GetAccountResponse:
        account = await self.economy.get_account(request.account_id)
        return pb.GetAccountResponse(account=account_pb(account, self.economy.tiers))

    async def Transfer(self, request: pb.TransferRequest) -> pb.TransferResponse:
        done = await self.economy.transfer(
            request.from_account_id,
            request.to_account_id,
            request.amount,
            memo=request.memo,
            request_id=request.request_id,
        )
        tiers = self.economy.tiers
        to_account = (
            account_pb(done.to_account, tiers)
            if _may_read(done.to_account)
            # Paying someone must not be a way around GetAccount's ownership check.
            else pb.Account(account_id=done.to_account.account_id)
        )
        return pb.TransferResponse(
            transaction=transaction_pb(done.transaction),
            from_account=account_pb(done.from_account, tiers),
            to_account=to_account,
        )

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest
    ) -> pb.ListTransactionsResponse:
        page = await self.economy.list_transactions(
            request.account_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListTransactionsResponse(
            transactions=[transaction_pb(tx) for tx in page.transactions],
            next_page_token=page.next_page_token,
        )

    async def Stake(self, request: pb.StakeRequest) -> pb.StakeResponse:
        done = await self.economy.stake(
            request.account_id, request.amount, request_id=request.request_id
        )
        return pb.StakeResponse(
            account=account_pb(done.account, self.economy.tiers),
            transaction=transaction_pb(done.transaction),
        )

    async def Unstake(self, request: pb.UnstakeRequest) -> pb.UnstakeResponse:
        done = await self.economy.unstake(
            request.account_id, request.amount, request_id=request.request_id
        )
        return pb.UnstakeResponse(
            account=account_pb(done.account, self.economy.tiers),
            transaction=transaction_pb(done.transaction),
        )

    async def OpenEscrow(self, request: pb.OpenEscrowRequest) -> pb.OpenEscrowResponse:
        done = await self.economy.open_escrow(
            request.payer_account_id,
            request.amount,
            escrow_id=request.escrow_id,
            reference=request.reference,
            request_id=request.request_id,
        )
        return pb.OpenEscrowResponse(escrow=escrow_pb(done.escrow))

    async def CaptureEscrow(self, request: pb.CaptureEscrowRequest) -> pb.CaptureEscrowResponse:
        done = await self.economy.capture_escrow(
            request.escrow_id,
            request.payee_account_id,
            request.amount,
            memo=request.memo,
            request_id=request.request_id,
        )
        return pb.CaptureEscrowResponse(
            escrow=escrow_pb(done.escrow), transaction=transaction_pb(done.transaction)
        )

    async def ReleaseEscrow(self, request: pb.ReleaseEscrowRequest) -> pb.ReleaseEscrowResponse:
        done = await self.economy.release_escrow(request.escrow_id, request_id=request.request_id)
        return pb.ReleaseEscrowResponse(escrow=escrow_pb(done.escrow))

    async def CreateProposal(self, request: pb.CreateProposalRequest) -> pb.CreateProposalResponse:
        period = duration_s(request.voting_period) if request.HasField("voting_period") else None
        proposal = await self.economy.create_proposal(
            request.proposer_account_id,
            request.title,
            description=request.description,
            voting_period_s=period,
            quorum=request.quorum,
            request_id=request.request_id,
        )
        return pb.CreateProposalResponse(proposal=proposal_pb(proposal))

    async def CastVote(self, request: pb.CastVoteRequest) -> pb.CastVoteResponse:
        proposal = await self.economy.cast_vote(
            request.proposal_id,
            request.voter_account_id,
            request.choice,
            request_id=request.request_id,
        )
        return pb.CastVoteResponse(proposal=proposal_pb(proposal))

    async def GetProposal(self, request: pb.GetProposalRequest) -> pb.GetProposalResponse:
        proposal = await self.economy.get_proposal(request.proposal_id)
        return pb.GetProposalResponse(proposal=proposal_pb(proposal))

    async def CloseProposal(self, request: pb.CloseProposalRequest) -> pb.CloseProposalResponse:
        proposal = await self.economy.close_proposal(request.proposal_id)
        return pb.CloseProposalResponse(proposal=proposal_pb(proposal))


def _may_read(account: Account) -> bool:
    """Whether the caller may see the account's balances (the rule GetAccount's policy applies)."""
    who = caller()
    return who is None or who.is_trusted or account.owner == who.name
