"""The approval console in a real browser: headless Chromium (Debian's package, installed by
scripts/browser-up) against a real web server and a real execute worker.

An operator logs in with a password and a TOTP code (computed from the operator's device, as
an authenticator app does), approves a PENDING proposal through the confirmation page (which shows
the preflight preview), executes it through the execute confirmation page, and sees the
execution appear SUBMITTED with the exchange's order id. The simulator gets exactly one order.
Screenshots of each page are saved under the test's tmp_path.
"""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.conftest import PASSWORD, operator
from tests.browser.pages import click_to_page, current_code, open_page
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from tests.workers import wait_for
from trading.models import TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db(transaction=True)

def run_action(browser, proposal_id: int, action: str, *, heading: str) -> None:
    """Ticks the proposal, picks the action and waits for its confirmation page."""
    browser.find_element(By.CSS_SELECTOR, f'input.action-select[value="{proposal_id}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value(action)
    go = browser.find_element(By.CSS_SELECTOR, 'button[name="index"]')
    click_to_page(browser, go, expect="h1", text=heading)


def test_an_operator_approves_and_executes_in_the_console_and_sees_the_order(
    browser, live_server, exchange, execute_worker, tmp_path
):
    shots = Path(tmp_path)
    olivia = operator()
    proposal = TradeProposalFactory(user=PolicyFactory(user=UserFactory(username="alice")).user)

    open_page(
        browser,
        f"{live_server.url}/admin/login/?next=/admin/trading/tradeproposal/",
        expect="#id_username",
    )
    browser.find_element(By.ID, "id_username").send_keys("olivia")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    login = browser.find_element(By.CSS_SELECTOR, 'input[type="submit"]')
    # Money moves only after the second factor: the console asks for the code first.
    click_to_page(browser, login, expect="#id_otp_token")
    browser.save_screenshot(shots / "0-code.png")
    browser.find_element(By.ID, "id_otp_token").send_keys(current_code(olivia.username))
    verify = browser.find_element(By.CSS_SELECTOR, 'input[value="Verify"]')
    stop = click_to_page(browser, verify, expect=".kill-switch")
    assert "Emergency stop: off" in stop.text
    browser.save_screenshot(shots / "1-changelist.png")

    run_action(browser, proposal.pk, "approve_selected", heading="Approve?")
    preview = browser.find_element(By.CSS_SELECTOR, "td.preflight").text
    assert "all rules pass" in preview and "kill_switch" in preview
    browser.save_screenshot(shots / "2-approve-confirmation.png")
    approve = browser.find_element(By.CSS_SELECTOR, 'input[value="Yes, approve"]')
    messages = click_to_page(browser, approve, expect=".messagelist")
    assert "1 proposal(s) approved." in messages.text
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.APPROVED

    run_action(browser, proposal.pk, "execute_selected", heading="Execute?")
    assert "all rules pass" in browser.find_element(By.CSS_SELECTOR, "td.preflight").text
    browser.save_screenshot(shots / "3-execute-confirmation.png")
    execute = browser.find_element(By.CSS_SELECTOR, 'input[value="Yes, execute"]')
    messages = click_to_page(browser, execute, expect=".messagelist")
    assert "1 execution(s) queued" in messages.text
    browser.save_screenshot(shots / "4-queued.png")

    wait_for(
        lambda: TradeExecution.objects.filter(proposal=proposal, status="SUBMITTED").exists(),
        what="the execute worker to submit the order",
    )
    execution = TradeExecution.objects.get(proposal=proposal)
    row = open_page(
        browser, f"{live_server.url}/admin/trading/tradeexecution/", expect="#result_list tbody tr"
    )
    assert "Submitted" in row.text and execution.exchange_order_id in row.text
    browser.save_screenshot(shots / "5-executions.png")

    orders = exchange.orders()
    assert len(orders) == 1
    assert orders[0]["orderId"] == execution.exchange_order_id
