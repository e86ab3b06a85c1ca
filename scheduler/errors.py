from core.errors import DomainError


class ScanError(DomainError):
    code = "SCAN_ERROR"


class ScanLeaseLost(ScanError):
    """The lease this work relied on is no longer ours (expired and taken, or released)."""

    code = "SCAN_LEASE_LOST"
    http_status = 409


class ScanJobLocked(ScanError):
    code = "SCAN_JOB_LOCKED"
    http_status = 409


class AdvisorCallFailed(ScanError):
    """The advisor could not be asked (timeout, connection, HTTP error): no usable answer."""

    code = "ADVISOR_CALL_FAILED"
    http_status = 502


class AdvisorOutputInvalid(ScanError):
    """The advisor answered, but not with a valid proposal or "no trade"; never stored."""

    code = "ADVISOR_OUTPUT_INVALID"


class ScanJobInvalid(ScanError):
    code = "SCAN_JOB_INVALID"


class ScanJobNotFound(ScanError):
    code = "SCAN_JOB_NOT_FOUND"
    http_status = 404
