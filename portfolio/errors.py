from core.errors import DomainError


class PortfolioError(DomainError):
    code = "PORTFOLIO_ERROR"


class LedgerYearInvalid(PortfolioError):
    code = "LEDGER_YEAR_INVALID"


class UserNotFound(PortfolioError):
    code = "USER_NOT_FOUND"
    http_status = 404
