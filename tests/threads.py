"""Competitors that really run at once: one thread each, released together by a barrier."""

import threading

from django.db import connection

from exchange.call_log import call_log_connection_forget


def run_in_parallel(target, args_list):
    """Runs target(*args) in one thread each, all released at once; returns the results (an
    exception a thread raised stands in its place, for the caller to assert)."""
    barrier = threading.Barrier(len(args_list))
    results = [None] * len(args_list)

    def worker(index, args):
        try:
            barrier.wait()
            results[index] = target(*args)
        except Exception as error:  # collected, asserted by the caller
            results[index] = error
        finally:
            connection.close()
            call_log_connection_forget()  # the order calls' log has a connection of its own

    threads = [threading.Thread(target=worker, args=(i, args)) for i, args in enumerate(args_list)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a competitor did not finish"
    return results
