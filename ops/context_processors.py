from ops.dashboard import DASHBOARD_PERMISSIONS


def dashboard_link(request) -> dict:
    """Whether the user may open the dashboard: a callable, so the permissions are read only
    by a template that shows the link (the console's changelist)."""
    return {"can_see_dashboard": lambda: request.user.has_perms(DASHBOARD_PERMISSIONS)}
