"""The console's own notification settings page in a real browser: the button gives a
one-time Telegram code, and `/start <code>` sent to the bot (a local fake of the Bot API)
links the chat, which the page then shows."""

import pytest
from selenium.webdriver.common.by import By

from notifications.telegram import telegram_update_handle
from tests.browser.conftest import PASSWORD
from tests.browser.pages import click_to_page, open_page, sign_in
from tests.factories import UserFactory
from tests.telegram_server import TelegramServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bot_api(settings):
    server = TelegramServer().start()
    settings.TELEGRAM_BOT_TOKEN = server.token
    settings.TELEGRAM_API_URL = server.url
    yield server
    server.stop()


def test_the_button_gives_a_code_that_links_the_chat(browser, live_server, bot_api):  # noqa: F811
    UserFactory(username="olivia", is_staff=True)
    status = sign_in(
        browser,
        live_server.url,
        username="olivia",
        password=PASSWORD,
        next_url="/admin/notifications/mine/",
        expect="#telegram-status",
    )
    assert status.text == "not linked"

    button = browser.find_element(By.ID, "telegram-link")
    shown = click_to_page(browser, button, expect="#telegram-code")
    code = shown.find_element(By.TAG_NAME, "code").text.removeprefix("/start ")
    assert len(code) == 10

    telegram_update_handle(bot_api.text(chat_id=321, from_id=654, text=f"/start {code}"))
    assert "Linked to olivia" in bot_api.calls("sendMessage")[-1].params["text"]
    status = open_page(
        browser, f"{live_server.url}/admin/notifications/mine/", expect="#telegram-status"
    )
    assert status.text.startswith("linked to chat 321")
