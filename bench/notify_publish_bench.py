"""What an ended execution pays to publish its notification, with the broker up and down.

    python bench/notify_publish_bench.py [--calls 500] [--down-calls 3]

The execute path's only notification work is one after-commit publish to the `notify` queue.
This times that publish (`notifications.services._publish`: its own pooled connection, one
try, one-second timeouts) next to Celery's default `send_task` (the app's pool and reconnect
settings, publish retries off), in alternating blocks: against Redis (`BENCH_BROKER_URL`,
default redis://127.0.0.1:6379/13, its notify queue emptied after), and against a port where
nothing listens. Prints medians and ratios.
"""

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BLOCK = 50
UNREACHABLE = "redis://127.0.0.1:1/0"


def timed(call, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--down-calls", type=int, default=3)
    parser.add_argument("--down", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if not options.down:
        # The broker URL is read when Django starts: the unreachable case runs in a child.
        os.environ["CELERY_BROKER_URL"] = os.environ.get(
            "BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    logging.disable(logging.CRITICAL)  # the failed publishes log an error each
    from config.celery import app
    from notifications.services import EVENT_TASK, _publish

    args = ["execution_ended", {"user_id": 0, "execution_id": 0}]

    def notify():
        _publish(EVENT_TASK, args)

    def default():
        try:
            app.send_task(EVENT_TASK, args=args, queue="notify", retry=False)
        except Exception:  # noqa: S110 - the unreachable broker is the point
            pass

    if options.down:
        down_notify = timed(notify, options.down_calls)
        down_default = timed(default, options.down_calls)
        print(f"{statistics.median(down_notify)} {statistics.median(down_default)}")
        return

    notify(), default()  # connections open, modules loaded
    up_notify, up_default = [], []
    for _ in range(0, options.calls, BLOCK):
        up_notify += timed(notify, BLOCK)
        up_default += timed(default, BLOCK)
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("notify")

    import subprocess

    child = subprocess.run(
        [sys.executable, __file__, "--down", "--down-calls", str(options.down_calls)],
        env={**os.environ, "CELERY_BROKER_URL": UNREACHABLE},
        capture_output=True,
        text=True,
        check=True,
    )
    down_notify, down_default = (float(v) for v in child.stdout.split()[-2:])

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:9.2f} ms"

    up_n, up_d = statistics.median(up_notify), statistics.median(up_default)
    print(f"broker up   ({len(up_notify)} publishes each, medians)")
    print(f"  notify publish        {ms(up_n)}")
    print(f"  default send_task     {ms(up_d)}   ratio notify/default {up_n / up_d:.2f}")
    print(f"broker down ({options.down_calls} publishes each, medians)")
    print(f"  notify publish        {ms(down_notify)}")
    print(
        f"  default send_task     {ms(down_default)}   "
        f"ratio default/notify {down_default / down_notify:,.0f}x"
    )


if __name__ == "__main__":
    main()
