import logging
import signal
import time

from django.core.management.base import BaseCommand, CommandError

from notifications.telegram import (
    TelegramApiError,
    bot_api,
    telegram_enabled,
    telegram_poll,
    telegram_poll_offset,
)

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Runs the Telegram bot by long polling (getUpdates) until stopped."

    def handle(self, *args, **options):
        if not telegram_enabled():
            raise CommandError("TELEGRAM_BOT_TOKEN is not set: the Telegram bot is off.")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
        try:
            me = bot_api("getMe")
        except TelegramApiError as error:
            raise CommandError(f"The bot token does not work: {error}") from None
        offset = telegram_poll_offset()
        self.stdout.write(f"telegram bot @{me.get('username')} polling from {offset}", ending="\n")
        self.stdout.flush()
        failures = 0
        while True:
            try:
                offset = telegram_poll(offset=offset)
                failures = 0
            except TelegramApiError as error:
                failures += 1
                logger.warning("getUpdates failed (%s in a row): %s", failures, error)
                time.sleep(min(2**failures, 60))  # back off while Telegram is unreachable
