from trading.models import Policy


def policy_get_for_user(*, user) -> Policy:
    """The user's policy; without one, the default: trading off, nothing allowed."""
    policy, _ = Policy.objects.get_or_create(user=user)
    return policy
