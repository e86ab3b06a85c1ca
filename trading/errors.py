from config.errors import DomainError


class TradingError(DomainError):
    code = "TRADING_ERROR"


class ProposalInvalid(TradingError):
    code = "PROPOSAL_INVALID"


class ProposalStateConflict(TradingError):
    code = "PROPOSAL_STATE_CONFLICT"
    http_status = 409


class PolicyMissing(TradingError):
    code = "POLICY_MISSING"
    http_status = 409
