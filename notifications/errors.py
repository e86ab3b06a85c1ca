from core.errors import DomainError


class NotificationError(DomainError):
    code = "NOTIFICATION_ERROR"


class NotificationSettingsInvalid(NotificationError):
    code = "NOTIFICATION_SETTINGS_INVALID"


class NotificationNotFound(NotificationError):
    code = "NOTIFICATION_NOT_FOUND"
    http_status = 404
