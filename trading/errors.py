from core.errors import DomainError


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


class NotFound(TradingError):
    code = "NOT_FOUND"
    http_status = 404


class PermissionMissing(TradingError):
    code = "PERMISSION_DENIED"
    http_status = 403


class PreflightRefused(TradingError):
    code = "PREFLIGHT_REFUSED"
    http_status = 409


class BrokerUnavailable(TradingError):
    code = "BROKER_UNAVAILABLE"
    http_status = 503


class PolicyInvalid(TradingError):
    code = "POLICY_INVALID"
