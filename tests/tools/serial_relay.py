"""A serial line between two programs, made of two pseudo-terminal pairs and
a relay that can misbehave (for the flashing tests):

    python tests/tools/serial_relay.py [--bps N] [--drop START:LEN] [--corrupt N] [--seed S]

prints one JSON line {"device": PATH, "client": PATH}, then relays bytes
until stdin closes. Faults, on the client → device direction, counted in
bytes: --drop START:LEN loses LEN bytes from byte START (a pulled cable);
--corrupt N flips one random bit in every N-th byte on average. --bps
limits both directions to N bytes per second (115200 baud ≈ 11520).
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


class Relay:
    def __init__(self, bps=None, drop=None, corrupt=None, seed=0):
        self.dev_master, self.dev_slave, self.device = pty_pair()
        self.cli_master, self.cli_slave, self.client = pty_pair()
        self.bps, self.drop, self.corrupt = bps, drop, corrupt
        self.rng = random.Random(seed)
        self.sent = 0  # client → device bytes seen
        self.stop = threading.Event()

    def fault(self, data):
        out = bytearray()
        for byte in data:
            at = self.sent
            self.sent += 1
            if self.drop and self.drop[0] <= at < self.drop[0] + self.drop[1]:
                continue
            if self.corrupt and self.rng.randrange(self.corrupt) == 0:
                byte ^= 1 << self.rng.randrange(8)
            out.append(byte)
        return bytes(out)

    def run(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.dev_master, self.cli_master], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 256)
                except OSError:
                    continue
                if fd == self.cli_master:
                    data, target = self.fault(data), self.dev_master
                else:
                    target = self.cli_master
                if self.bps:
                    time.sleep(len(data) / self.bps)
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
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    drop = tuple(int(x) for x in args.drop.split(":")) if args.drop else None
    relay = Relay(args.bps, drop, args.corrupt, args.seed).start()
    print(json.dumps({"device": relay.device, "client": relay.client}), flush=True)
    sys.stdin.read()
    relay.stop.set()


if __name__ == "__main__":
    main()
