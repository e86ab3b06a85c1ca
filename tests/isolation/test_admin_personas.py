"""Every admin action and console page with the personas: alice and bob (not staff) are sent
to the login page, charlie (staff who may only view) and charlie_bare (staff with no
permission) are refused every action that changes something, and nothing in the database
changes. An operator holding the permissions is the control: the same request does change it.

The tables cover every action of every admin of the product and every page the console adds:
a new one without a case fails the first test.
"""

import json
from datetime import datetime

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.forms.models import model_to_dict
from django.urls import URLPattern, reverse

from tests.factories import UserFactory, login_verified
from tests.isolation.personas import MARKER, OUR_APPS, World, database_state, url_routes

pytestmark = pytest.mark.django_db

# (model, action): (World attribute, extra form data, whether an operator with every
# permission can run it; audit rows are never deletable, not even by an operator).
ACTION_CASES = {
    ("trading.tradeproposal", "approve_selected"): ("proposal", {"post": "yes"}, True),
    ("trading.tradeproposal", "reject_selected"): (
        "proposal",
        {"post": "yes", "reason": "no"},
        True,
    ),
    ("trading.tradeproposal", "execute_selected"): ("approved", {"post": "yes"}, True),
    ("trading.tradeproposal", "delete_selected"): ("proposal", {"post": "yes"}, False),
    ("trading.policy", "disable_trading"): ("policy", {}, True),
    ("trading.policy", "delete_selected"): ("policy", {"post": "yes"}, True),
    ("scheduler.scanjob", "release_lease"): ("scan_job", {}, True),
    ("scheduler.scanjob", "delete_selected"): ("scan_job", {"post": "yes"}, True),
    ("trading.emergencystop", "delete_selected"): ("stop", {"post": "yes"}, False),
    ("trading.tradeexecution", "delete_selected"): ("execution", {"post": "yes"}, False),
    ("trading.tradehistory", "delete_selected"): ("history", {"post": "yes"}, False),
    ("trading.proposalevent", "delete_selected"): ("event", {"post": "yes"}, False),
    ("budget.gptusagelog", "delete_selected"): ("usage", {"post": "yes"}, False),
    ("exchange.exchangecall", "delete_selected"): ("exchange_call", {"post": "yes"}, False),
    ("exchange.balancesnapshot", "delete_selected"): ("balance", {"post": "yes"}, False),
    ("notifications.notificationsettings", "delete_selected"): (
        "notification_settings",
        {"post": "yes"},
        False,
    ),
    ("notifications.notificationdelivery", "delete_selected"): ("delivery", {"post": "yes"}, False),
    ("evaluation.advisordecision", "delete_selected"): ("decision", {"post": "yes"}, False),
    ("evaluation.proposaloutcome", "delete_selected"): ("outcome", {"post": "yes"}, False),
    ("portfolio.portfoliosnapshot", "delete_selected"): ("snapshot", {"post": "yes"}, False),
    ("trading.allocationchange", "delete_selected"): (
        "allocation_change",
        {"post": "yes"},
        False,
    ),
    ("trading.accountfunds", "delete_selected"): ("account_funds", {"post": "yes"}, True),
}

# Pages the console adds, and the change forms of what staff may edit: (url name, World
# attribute for the id or None, form data). All are POSTs that would change something.
PAGE_CASES = {
    "trading_emergency_stop_toggle": (None, lambda w: {"active": "1", "reason": "not mine"}),
    "trading_tradeproposal_override": (
        "approved",
        lambda w: {"override_cooldown": "on", "reason": "x"},
    ),
    # The decision screen's buttons.
    "trading_tradeproposal_approve": ("proposal", lambda w: {}),
    "trading_tradeproposal_reject": ("proposal", lambda w: {"reason": "not mine"}),
    "trading_tradeproposal_execute": ("approved", lambda w: {}),
    "trading_policy_change": ("policy", lambda w: change_form(w.policy, trading_enabled=False)),
    "trading_emergencystop_change": ("stop", lambda w: change_form(w.stop, active=True)),
    "scheduler_scanjob_change": ("scan_job", lambda w: change_form(w.scan_job, enabled=False)),
}
# Read-only pages outside admin.site's own URLs; each needs view permissions.
READ_PAGES = {"admin-dashboard", "admin-scorecard", "admin-portfolio", "admin-portfolio-ledger"}
# Read-only admin pages of one object: (url name, World attribute for the id).
ADMIN_READ_PAGES = {"trading_tradeproposal_state": "proposal"}
# Pages of the signed-in staff member's own settings: no permission, nobody else's rows.
OWN_PAGES = {"admin-notification-settings"}


def change_form(instance, **changes) -> dict:
    """The admin change form's data for `instance`, with `changes` applied."""
    data = {}
    for name, value in {**model_to_dict(instance), **changes}.items():
        if value is None or value is False:  # an unchecked box is not sent
            continue
        if isinstance(value, datetime):  # the admin's split date and time widget
            data[f"{name}_0"], data[f"{name}_1"] = value.strftime("%Y-%m-%d %H:%M:%S").split()
        else:
            data[name] = json.dumps(value) if isinstance(value, list | dict) else value
    return data


STANDARD_SUFFIXES = ("_changelist", "_add", "_history", "_delete", "_change")


def our_admins():
    return [ma for model, ma in admin.site._registry.items() if model._meta.app_label in OUR_APPS]


def test_every_admin_action_and_page_has_a_persona_case(rf):
    request = rf.get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    actions = {
        (ma.model._meta.label_lower, name)
        for ma in our_admins()
        for _, name, _ in ma._get_base_actions()
    }
    assert actions == set(ACTION_CASES)
    added_pages = {
        p.name
        for ma in our_admins()
        for p in ma.get_urls()
        if isinstance(p, URLPattern) and p.name and not p.name.endswith(STANDARD_SUFFIXES)
    }
    assert added_pages <= set(PAGE_CASES) | set(ADMIN_READ_PAGES)
    outside_site = {p.name for route, p in url_routes() if route.startswith("admin/")}
    assert outside_site == READ_PAGES | OWN_PAGES


@pytest.fixture
def world():
    return World()


def changelist(model: str) -> str:
    return reverse(f"admin:{model.replace('.', '_')}_changelist")


def post_action(client, world, model, action):
    attribute, data, _ = ACTION_CASES[(model, action)]
    target = getattr(world, attribute)
    return client.post(
        changelist(model), {"action": action, "_selected_action": [target.pk], **data}
    )


def post_page(client, world, name):
    attribute, data = PAGE_CASES[name]
    args = [getattr(world, attribute).pk] if attribute else []
    return client.post(reverse(f"admin:{name}", args=args), data(world))


def admin_read_url(world, name) -> str:
    return reverse(f"admin:{name}", args=[getattr(world, ADMIN_READ_PAGES[name]).pk])


def offered(client, model) -> set[str]:
    response = client.get(changelist(model))
    form = response.context["action_form"] if response.status_code == 200 else None
    return {choice for choice, _ in form.fields["action"].choices} if form else set()


@pytest.mark.parametrize("persona", ["alice", "bob"])
def test_users_who_are_not_staff_are_sent_to_the_login_page(client, world, persona):
    client.force_login(getattr(world, persona))
    before = database_state()
    answers = [post_action(client, world, model, action) for model, action in ACTION_CASES]
    answers += [post_page(client, world, name) for name in PAGE_CASES]
    answers += [client.get(reverse(name)) for name in READ_PAGES | OWN_PAGES]
    answers += [client.post(reverse(name)) for name in OWN_PAGES]
    answers += [client.get(admin_read_url(world, name)) for name in ADMIN_READ_PAGES]
    for response in answers:
        assert response.status_code == 302 and response.url.startswith("/admin/login/")
    assert database_state() == before


@pytest.mark.parametrize("persona", ["charlie", "charlie_bare"])
@pytest.mark.parametrize("model, action", list(ACTION_CASES))
def test_staff_without_permissions_cannot_run_an_action(client, world, persona, model, action):
    client.force_login(getattr(world, persona))
    before = database_state()
    response = post_action(client, world, model, action)
    # No view permission: 403. View only: the action is not offered, the changelist comes
    # back with "No action selected".
    assert response.status_code in (200, 302, 403)
    assert database_state() == before
    assert action not in offered(client, model)


@pytest.mark.parametrize("persona", ["charlie", "charlie_bare"])
@pytest.mark.parametrize("name", list(PAGE_CASES))
def test_staff_without_permissions_is_refused_every_console_page(client, world, persona, name):
    client.force_login(getattr(world, persona))
    before = database_state()
    response = post_page(client, world, name)
    assert response.status_code == 403
    assert database_state() == before


@pytest.mark.parametrize("name", sorted(READ_PAGES))
def test_staff_without_permissions_does_not_see_a_read_page(client, world, name):
    client.force_login(world.charlie_bare)
    assert client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("name", sorted(READ_PAGES))
def test_staff_who_may_view_see_a_read_page_with_every_users_rows(client, world, name):
    # The control: charlie holds the view permissions and sees alice's rows there.
    client.force_login(world.charlie)
    response = client.get(reverse(name))
    assert response.status_code == 200
    if name == "admin-scorecard":
        assert MARKER in response.content.decode()


@pytest.mark.parametrize("name", sorted(ADMIN_READ_PAGES))
def test_staff_without_permissions_does_not_read_an_objects_page(client, world, name):
    client.force_login(world.charlie_bare)
    assert client.get(admin_read_url(world, name)).status_code == 403


@pytest.mark.parametrize("name", sorted(ADMIN_READ_PAGES))
def test_staff_who_may_view_read_an_objects_page_of_any_user(client, world, name):
    client.force_login(world.charlie)
    before = database_state()
    response = client.get(admin_read_url(world, name))
    assert response.status_code == 200 and response.json()["proposal_status"] == "PENDING"
    assert database_state() == before


@pytest.mark.parametrize("name", sorted(OWN_PAGES))
def test_staff_see_only_their_own_settings_page(client, world, name):
    client.force_login(world.charlie_bare)
    response = client.get(reverse(name))
    assert response.status_code == 200
    assert MARKER not in response.content.decode()


@pytest.mark.parametrize("name", ["admin-portfolio", "admin-portfolio-ledger"])
def test_staff_who_may_view_see_the_portfolio_of_the_user_they_choose(client, world, name):
    # The control for the test above: the same page, with view permissions, shows alice's.
    client.force_login(world.charlie)
    before = database_state()
    response = client.get(reverse(name), {"user": world.alice.pk})
    assert response.status_code == 200
    assert MARKER in response.content.decode()
    assert database_state() == before


@pytest.fixture
def operator():
    user = UserFactory(username="olivia", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=OUR_APPS))
    return user


@pytest.mark.parametrize("model, action", list(ACTION_CASES))
def test_an_operator_with_the_permissions_runs_the_same_action(
    client, world, operator, exchange, model, action
):
    # The control: the very request refused above changes the database for an operator,
    # except deleting audit rows, which nobody may do.
    login_verified(client, operator)
    before = database_state()
    post_action(client, world, model, action)
    runnable = ACTION_CASES[(model, action)][2]
    assert (database_state() != before) == runnable
    assert (action in offered(client, model)) == runnable


@pytest.mark.parametrize("name", list(PAGE_CASES))
def test_an_operator_with_the_permissions_uses_the_same_page(
    client, world, operator, exchange, name
):
    login_verified(client, operator)
    before = database_state()
    response = post_page(client, world, name)
    assert response.status_code == 302, response.content
    assert database_state() != before
