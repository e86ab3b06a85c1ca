"""The proposal's decision screen in a real browser: headless Chromium at 1440×900 against a
live server, the simulator over HTTP and a real execute worker.

An operator opens a PENDING proposal's page: the candle chart is drawn on its canvas, the
drift, the holding and every preflight verdict are above the fold. They approve with one
click (and the confirmation), execute with one click, and the page refreshes the
execution's state by itself until it is SUBMITTED with its fill price; the simulator holds
exactly one order. Every request the browser made went to our own origin (its performance
log), every page carried the Content-Security-Policy, and the console logged no error.
Full-page screenshots are saved under var/screenshots/ for people to look at.
"""

import base64
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import timezone
from selenium.webdriver.common.by import By

from exchange.readonly import ReadonlyClient
from tests.browser.conftest import HEIGHT, PASSWORD, WIDTH, operator
from tests.browser.pages import click_confirm_to_page, page_marker, sign_in, wait_until
from tests.factories import (
    PolicyFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
    UserFactory,
)
from trading.models import TradeExecution

pytestmark = pytest.mark.django_db(transaction=True)

SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


def above_the_fold(browser, selector: str) -> bool:
    """The element is on the page and its box ends inside the first screen."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); if (!e) return false;"
        "const r = e.getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;",
        selector,
    )


# Pixels in the candles' colours (decision.js: up #1e7b34, down #ba2121) over every canvas
# of the chart: a drawn chart has many, an empty canvas none.
CANDLE_PIXELS = """
let count = 0;
for (const canvas of document.querySelectorAll('#decision-chart canvas')) {
  if (!canvas.width || !canvas.height) continue;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 0 && ((r === 30 && g === 123 && b === 52) || (r === 186 && g === 33 && b === 33))) {
      count++;
    }
  }
}
return count;
"""


def full_page_screenshot(browser, path: Path) -> None:
    size = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def network_log(browser) -> tuple[list[str], list[tuple[str, dict]]]:
    """The URLs of every request the browser made, and every document's URL and headers."""
    urls, documents = [], []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls.append(params["request"]["url"])
        elif message["method"] == "Network.responseReceived" and params.get("type") == "Document":
            response = params["response"]
            headers = {k.lower(): v for k, v in response["headers"].items()}
            documents.append((response["url"], headers))
    return urls, documents


def test_an_operator_decides_on_the_proposal_page_and_sees_the_order_final(
    browser, live_server, exchange, execute_worker
):
    operator()
    alice = PolicyFactory(user=UserFactory(username="alice")).user
    # Bought two days ago: a holding, and no cooldown or cap today.
    two_days_ago = timezone.now() - timedelta(days=2)
    TradeHistoryFactory(
        execution__proposal__user=alice,
        execution__claimed_at=two_days_ago,
        executed_at=two_days_ago,
        amount=Decimal("0.0005"),
    )
    price = ReadonlyClient().ticker_price("BTC-EUR")
    # The price fell 0.5 % since the buy was proposed: in its favour.
    proposal = TradeProposalFactory(user=alice, price_at_proposal=price * Decimal("1.005"))
    page = f"/admin/trading/tradeproposal/{proposal.pk}/change/"

    sign_in(
        browser,
        live_server.url,
        username="olivia",
        password=PASSWORD,
        next_url=page,
        expect="#decision",
    )
    wait_until(
        browser,
        lambda b: b.find_element(By.ID, "decision-chart").get_attribute("data-drawn") == "1",
        what="the chart to be drawn",
    )
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [
        WIDTH,
        HEIGHT,
    ]
    assert browser.execute_script(CANDLE_PIXELS) > 100
    drift = browser.find_element(By.ID, "decision-drift")
    assert "in favour of the buy" in drift.text and "ok" in drift.get_attribute("class")
    assert "0.0005 BTC" in browser.find_element(By.ID, "decision-holding").text
    verdicts = browser.find_element(By.ID, "decision-verdicts").text
    assert "Preflight if approved now: every rule passes" in verdicts
    assert "Balance (shared account)" in verdicts and "EUR available on the shared" in verdicts
    for selector in (
        "#decision-chart",
        "#decision-drift",
        "#decision-holding",
        "#decision-verdicts",
        "#decision-approve",
    ):
        assert above_the_fold(browser, selector), f"{selector} is below the fold"
    full_page_screenshot(browser, SHOTS / "decision-1-pending.png")

    approve = browser.find_element(By.ID, "decision-approve")
    messages = click_confirm_to_page(browser, approve, expect=".messagelist", text="approved")
    assert f"Proposal #{proposal.pk} approved." in messages.text
    assert (
        "Preflight now: every rule passes" in browser.find_element(By.ID, "decision-verdicts").text
    )

    execute = browser.find_element(By.ID, "decision-execute")
    click_confirm_to_page(browser, execute, expect=".messagelist", text="execute worker")
    status = wait_until(
        browser,
        lambda b: (
            b.find_element(By.ID, "decision").get_attribute("data-final") == "1"
            and b.find_element(By.ID, "decision-execution-status")
        ),
        what="the page to show the execution final",
    )
    assert status.text == "SUBMITTED"
    execution = TradeExecution.objects.get(proposal=proposal)
    state = page_marker(browser, "#decision-execution", text=execution.exchange_order_id).text
    assert "filled at" in state
    assert browser.find_element(By.ID, "decision-proposal-status").text == "EXECUTED"
    full_page_screenshot(browser, SHOTS / "decision-2-executed.png")

    orders = exchange.orders()
    assert len(orders) == 1 and orders[0]["orderId"] == execution.exchange_order_id

    ours = urlsplit(live_server.url).netloc
    urls, documents = network_log(browser)
    # The browser's own pages (chrome://, its new tab) are not the console's requests.
    fetched = [url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")]
    assert any(url.endswith(".standalone.production.js") for url in fetched)
    assert [url for url in fetched if urlsplit(url).netloc != ours] == []
    pages = [headers for url, headers in documents if urlsplit(url).netloc == ours]
    assert len(pages) >= 4  # login, the proposal's page, after approve, after execute
    assert all("script-src 'self';" in h.get("content-security-policy", "") for h in pages)
    # No script error and no refusal by the policy (the admin has no favicon: its 404 is not
    # the page's).
    errors = [
        e
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]
    ]
    assert errors == []


def test_the_api_docs_and_the_console_load_nothing_from_elsewhere(browser, live_server):
    # Swagger UI from our static files (drf-spectacular-sidecar), its set-up script a
    # request of its own: the page works under the policy, offline.
    operator()
    sign_in(
        browser,
        live_server.url,
        username="olivia",
        password=PASSWORD,
        next_url="/admin/",
        expect="#site-name",
    )
    view_site = browser.find_element(By.CSS_SELECTOR, "#user-tools a[href='/admin/']")
    assert view_site.text.lower() == "view site"  # the console itself, not a 404
    browser.get(f"{live_server.url}/api/v1/docs/")
    operations = wait_until(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"),
        what="Swagger UI to list the operations",
    )
    assert len(operations) > 10
    ours = urlsplit(live_server.url).netloc
    urls, documents = network_log(browser)
    fetched = [url for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")]
    assert any("swagger-ui-bundle" in url for url in fetched)
    assert [url for url in fetched if urlsplit(url).netloc != ours] == []
    pages = [headers for url, headers in documents if urlsplit(url).netloc == ours]
    assert all("script-src 'self';" in h.get("content-security-policy", "") for h in pages)
    errors = [
        e
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]
    ]
    assert errors == []
