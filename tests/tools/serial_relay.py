"""A serial line between two programs, made of two pseudo-terminal pairs and
a relay that can misbehave (for the flashing tests and benchmarks):

    python tests/tools/serial_relay.py [--bps N] [--drop START:LEN] [--corrupt N]
                                       [--dup N] [--delay-ms MS] [--both] [--seed S]

prints one JSON line {"device": PATH, "client": PATH}, then relays bytes
until stdin closes.

Faults (client → device, and device → client too with --both):
  --drop START:LEN  loses LEN client bytes from client byte START (a pulled cable);
  --corrupt N       flips one random bit in every N-th byte on average;
  --dup N           sends every N-th byte twice on average;
  --delay-ms MS     holds each read for a random 0..MS milliseconds;
  --bps N           limits the line to N bytes per second (115200 baud ≈ 11520;
                    one thread carries both directions, like a half-duplex
                    request/answer exchange).

While it runs, each line on stdin is a JSON object that replaces the fault
settings (keys: corrupt, dup, delay_ms, both, bps, drop = [START, LEN]
counted from that moment) and may add one-off events: {"stall": S} forwards
nothing for S seconds (bytes wait in the pseudo-terminals), {"cut": S}
loses everything in both directions for S seconds (a cable out and back).
The relay answers each control line with "ok" on stdout once it applies.
"""
import argparse
import json
import os
import random
import select
import sys
import threading
import time
import tty


def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class Faults:
    def __init__(self, corrupt=None, dup=None, delay_ms=0, both=False, bps=None, drop=None):
        self.corrupt, self.dup, self.delay_ms = corrupt, dup, delay_ms
        self.both, self.bps, self.drop = both, bps, drop


class Relay:
    def __init__(self, faults=None, seed=0):
        self.dev_master, self.dev_slave, self.device = pty_pair()
        self.cli_master, self.cli_slave, self.client = pty_pair()
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.sent = 0  # client → device bytes seen
        self.drop_base = 0  # `sent` when the drop window was set
        self.paused_until = 0.0  # stall: forward nothing before this time
        self.cut_until = 0.0  # cut: lose everything before this time
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def control(self, settings):
        with self.lock:
            drop = settings.get("drop")
            self.faults = Faults(
                settings.get("corrupt"),
                settings.get("dup"),
                settings.get("delay_ms", 0),
                settings.get("both", False),
                settings.get("bps", self.faults.bps),
                tuple(drop) if drop else None,
            )
            self.drop_base = self.sent
            now = time.monotonic()
            if "stall" in settings:
                self.paused_until = now + float(settings["stall"])
            if "cut" in settings:
                self.cut_until = now + float(settings["cut"])

    def fault(self, data, from_client):
        f = self.faults
        if from_client:
            start = self.sent - self.drop_base
            in_window = f.drop and start + len(data) > f.drop[0] and start < f.drop[0] + f.drop[1]
            if not (in_window or f.corrupt or f.dup):
                self.sent += len(data)
                return data
        elif not (f.both and (f.corrupt or f.dup)):
            return data
        out = bytearray()
        for byte in data:
            if from_client:
                at = self.sent - self.drop_base
                self.sent += 1
                if f.drop and f.drop[0] <= at < f.drop[0] + f.drop[1]:
                    continue
            if from_client or f.both:
                if f.corrupt and self.rng.randrange(f.corrupt) == 0:
                    byte ^= 1 << self.rng.randrange(8)
                if f.dup and self.rng.randrange(f.dup) == 0:
                    out.append(byte)
            out.append(byte)
        return bytes(out)

    def run(self):
        # The line is free again at `line_free` (monotonic seconds): a byte
        # leaves no earlier than len/bps after the previous one, whatever
        # time the relay itself spends.
        line_free = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() < self.paused_until:
                time.sleep(0.01)
                continue
            ready, _, _ = select.select([self.dev_master, self.cli_master], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 256)
                except OSError:
                    continue
                from_client = fd == self.cli_master
                target = self.dev_master if from_client else self.cli_master
                with self.lock:
                    if time.monotonic() < self.cut_until:
                        continue
                    data = self.fault(data, from_client)
                    f = self.faults
                    delay = self.rng.uniform(0, f.delay_ms) / 1000 if f.delay_ms else 0
                if delay:
                    time.sleep(delay)
                if f.bps:
                    line_free = max(line_free, time.monotonic()) + len(data) / f.bps
                    wait = line_free - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                if data:
                    os.write(target, data)

    def start(self):
        threading.Thread(target=self.run, daemon=True).start()
        return self


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bps", type=int)
    parser.add_argument("--drop")
    parser.add_argument("--corrupt", type=int)
    parser.add_argument("--dup", type=int)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--both", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    drop = tuple(int(x) for x in args.drop.split(":")) if args.drop else None
    faults = Faults(args.corrupt, args.dup, args.delay_ms, args.both, args.bps, drop)
    relay = Relay(faults, args.seed).start()
    print(json.dumps({"device": relay.device, "client": relay.client}), flush=True)
    for line in sys.stdin:
        if line.strip():
            relay.control(json.loads(line))
            print("ok", flush=True)
    relay.stop.set()


if __name__ == "__main__":
    main()
