"""``EconomyService`` over gRPC: parse the request, call ``Economy``, build the response.

Errors are ``MeshError``s raised by the domain; ``MeshServer`` maps them to
rich statuses, so no method here sets a status code.
"""

from __future__ import annotations

from meshwright.economy._messages import (
    account_kind_of,
    account_pb,
    asset_of,
    audit_pb,
    escrow_pb,
    escrow_state_of,
    optional_duration_s,
    parameter_change,
    parameters_pb,
    proposal_pb,
    proposal_state_of,
    transaction_kind_of,
    transaction_pb,
    unbonding_pb,
)
from meshwright.economy.economy import Economy
from meshwright.economy.model import Account, Asset
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh.context import caller

ECONOMY_SERVICE = pb.DESCRIPTOR.services_by_name["EconomyService"]
"""The service descriptor to pass to ``MeshServer.add`` and the clients."""


class EconomyServicer:
    """Serves ``meshwright.economy.v1.EconomyService`` from an ``Economy``."""

    def __init__(self, economy: Economy) -> None:
        self.economy = economy

    # Accounts -----------------------------------------------------------------

    async def CreateAccount(self, request: pb.CreateAccountRequest) -> pb.CreateAccountResponse:
        account = await self.economy.create_account(
            request.account_id,
            display_name=request.display_name,
            initial_balance=request.initial_balance,
            initial_gov_balance=request.initial_gov_balance,
            request_id=request.request_id,
            owner=request.owner,
        )
        return pb.CreateAccountResponse(account=account_pb(account))

    async def Mint(self, request: pb.MintRequest) -> pb.MintResponse:
        done = await self.economy.mint(
            request.account_id,
            request.amount,
            asset=asset_of(request.asset) or Asset.CREDIT,
            memo=request.memo,
            request_id=request.request_id,
        )
        return pb.MintResponse(
            account=account_pb(done.account), transaction=transaction_pb(done.transaction)
        )

    async def GetAccount(self, request: pb.GetAccountRequest) -> pb.GetAccountResponse:
        account = await self.economy.get_account(request.account_id)
        return pb.GetAccountResponse(account=account_pb(account))

    async def ListAccounts(self, request: pb.ListAccountsRequest) -> pb.ListAccountsResponse:
        page = await self.economy.list_accounts(
            owner=request.owner,
            kind=account_kind_of(request.kind),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListAccountsResponse(
            accounts=[account_pb(a) for a in page.items], next_page_token=page.next_page_token
        )

    async def Transfer(self, request: pb.TransferRequest) -> pb.TransferResponse:
        done = await self.economy.transfer(
            request.from_account_id,
            request.to_account_id,
            request.amount,
            asset=asset_of(request.asset) or Asset.CREDIT,
            memo=request.memo,
            request_id=request.request_id,
        )
        to_account = (
            account_pb(done.to_account)
            if _may_read(done.to_account)
            # Paying someone must not be a way around GetAccount's ownership check.
            else pb.Account(account_id=done.to_account.account_id)
        )
        return pb.TransferResponse(
            transaction=transaction_pb(done.transaction),
            from_account=account_pb(done.from_account),
            to_account=to_account,
        )

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest
    ) -> pb.ListTransactionsResponse:
        page = await self.economy.list_transactions(
            request.account_id,
            asset=asset_of(request.asset),
            kind=transaction_kind_of(request.kind),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListTransactionsResponse(
            transactions=[transaction_pb(tx) for tx in page.transactions],
            next_page_token=page.next_page_token,
        )

    # Stake ----------------------------------------------------------------------

    async def Stake(self, request: pb.StakeRequest) -> pb.StakeResponse:
        done = await self.economy.stake(
            request.account_id, request.amount, request_id=request.request_id
        )
        return pb.StakeResponse(
            account=account_pb(done.account), transaction=transaction_pb(done.transaction)
        )

    async def Unstake(self, request: pb.UnstakeRequest) -> pb.UnstakeResponse:
        done = await self.economy.unstake(
            request.account_id, request.amount, request_id=request.request_id
        )
        reply = pb.UnstakeResponse(
            account=account_pb(done.account), transaction=transaction_pb(done.transaction)
        )
        if done.unbonding is not None:
            reply.unbonding.CopyFrom(unbonding_pb(done.unbonding))
        return reply

    # Escrow ---------------------------------------------------------------------

    async def OpenEscrow(self, request: pb.OpenEscrowRequest) -> pb.OpenEscrowResponse:
        done = await self.economy.open_escrow(
            request.payer_account_id,
            request.amount,
            escrow_id=request.escrow_id,
            reference=request.reference,
            ttl_s=optional_duration_s(request, "ttl"),
            request_id=request.request_id,
        )
        return pb.OpenEscrowResponse(escrow=escrow_pb(done.escrow))

    async def CaptureEscrow(self, request: pb.CaptureEscrowRequest) -> pb.CaptureEscrowResponse:
        done = await self.economy.capture_escrow(
            request.escrow_id,
            request.payee_account_id,
            request.amount,
            memo=request.memo,
            task_id=request.task_id,
            payee_owner=request.payee_owner,
            request_id=request.request_id,
        )
        return pb.CaptureEscrowResponse(
            escrow=escrow_pb(done.escrow),
            transaction=transaction_pb(done.transaction),
            bonus=done.bonus,
        )

    async def ReleaseEscrow(self, request: pb.ReleaseEscrowRequest) -> pb.ReleaseEscrowResponse:
        done = await self.economy.release_escrow(request.escrow_id, request_id=request.request_id)
        return pb.ReleaseEscrowResponse(escrow=escrow_pb(done.escrow))

    async def RenewEscrow(self, request: pb.RenewEscrowRequest) -> pb.RenewEscrowResponse:
        escrow = await self.economy.renew_escrow(
            request.escrow_id, ttl_s=optional_duration_s(request, "ttl")
        )
        return pb.RenewEscrowResponse(escrow=escrow_pb(escrow))

    async def GetEscrow(self, request: pb.GetEscrowRequest) -> pb.GetEscrowResponse:
        escrow = await self.economy.get_escrow(request.escrow_id)
        return pb.GetEscrowResponse(escrow=escrow_pb(escrow))

    async def ListEscrows(self, request: pb.ListEscrowsRequest) -> pb.ListEscrowsResponse:
        page = await self.economy.list_escrows(
            owner=request.owner,
            state=escrow_state_of(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListEscrowsResponse(
            escrows=[escrow_pb(e) for e in page.items], next_page_token=page.next_page_token
        )

    # Rewards --------------------------------------------------------------------

    async def ReportTaskFailure(
        self, request: pb.ReportTaskFailureRequest
    ) -> pb.ReportTaskFailureResponse:
        account = await self.economy.report_task_failure(
            request.payee_account_id, escrow_id=request.escrow_id, task_id=request.task_id
        )
        return pb.ReportTaskFailureResponse(account=account_pb(account))

    async def DistributeRewards(
        self, request: pb.DistributeRewardsRequest
    ) -> pb.DistributeRewardsResponse:
        done = await self.economy.distribute_rewards(
            request.amount, memo=request.memo, request_id=request.request_id
        )
        reply = pb.DistributeRewardsResponse(recipient_count=done.recipients)
        if done.transaction is not None:
            reply.transaction.CopyFrom(transaction_pb(done.transaction))
        return reply

    # Governance -----------------------------------------------------------------

    async def CreateProposal(self, request: pb.CreateProposalRequest) -> pb.CreateProposalResponse:
        proposal = await self.economy.create_proposal(
            request.proposer_account_id,
            request.title,
            description=request.description,
            voting_period_s=optional_duration_s(request, "voting_period"),
            quorum=request.quorum,
            threshold_bps=request.threshold_bps or None,
            change=parameter_change(request.change) if request.HasField("change") else None,
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

    async def ListProposals(self, request: pb.ListProposalsRequest) -> pb.ListProposalsResponse:
        page = await self.economy.list_proposals(
            state=proposal_state_of(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListProposalsResponse(
            proposals=[proposal_pb(p) for p in page.items], next_page_token=page.next_page_token
        )

    async def CloseProposal(self, request: pb.CloseProposalRequest) -> pb.CloseProposalResponse:
        proposal = await self.economy.close_proposal(request.proposal_id)
        return pb.CloseProposalResponse(proposal=proposal_pb(proposal))

    # The ledger -----------------------------------------------------------------

    async def GetParameters(self, request: pb.GetParametersRequest) -> pb.GetParametersResponse:
        return pb.GetParametersResponse(
            parameters=parameters_pb(await self.economy.parameters(fresh=True))
        )

    async def AuditLedger(self, request: pb.AuditLedgerRequest) -> pb.AuditLedgerResponse:
        return audit_pb(await self.economy.audit())


def _may_read(account: Account) -> bool:
    """Whether the caller may see the account's balances (the rule GetAccount's policy applies)."""
    who = caller()
    return who is None or who.is_trusted or account.owner == who.name
