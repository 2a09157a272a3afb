#!/usr/bin/env python3
"""Runs a command and relays its stdin and stdout with a fixed one-way delay, like a network link
with latency but without a bandwidth limit: every block read is forwarded DELAY_MS after it arrived,
and blocks keep flowing meanwhile (a link's pipelining). Used by remote-throughput.sh (LATENCY_MS) to
show what round trips cost a `borg serve` client on a real network, which a local pipe hides.

    latency-relay.py DELAY_MS COMMAND [ARG...]
"""
import collections
import os
import subprocess
import sys
import threading
import time

BLOCK = 1 << 20


def relay(src, dst, delay):
    """Copies src to dst, each block delay seconds after it was read; EOF likewise."""
    queue = collections.deque()
    ready = threading.Condition()

    def reader():
        while True:
            data = os.read(src, BLOCK)
            with ready:
                queue.append((time.monotonic() + delay, data))
                ready.notify()
            if not data:
                return

    threading.Thread(target=reader, daemon=True).start()
    while True:
        with ready:
            while not queue:
                ready.wait()
            due, data = queue.popleft()
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if not data:
            os.close(dst)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]


def main():
    delay = float(sys.argv[1]) / 1000.0
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    up = threading.Thread(target=relay, args=(0, child.stdin.fileno(), delay), daemon=True)
    up.start()
    relay(child.stdout.fileno(), 1, delay)
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
