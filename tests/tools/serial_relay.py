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

While it runs, each line on stdin is a JSON object. Fault keys (corrupt,
dup, delay_ms, both, bps, drop = [START, LEN] counted from that moment)
replace all fault settings and cancel pending events; a line may also (or
only) carry one-off events, which leave the faults as they are:
{"stall": S} forwards nothing for S seconds (bytes wait in the
pseudo-terminals), {"cut": S} loses everything in both directions for S
seconds (a cable out and back). The relay answers each control line with
"ok" on stdout once it applies, or "error: WHY" (a malformed line, unknown
key, bad value, or a relay thread that died) and changes nothing.

Both pseudo-terminals are kept non-exclusive: a client that opened its port
exclusively (TIOCEXCL, as serialport does) and was killed would otherwise
leave the port closed to every later non-root opener.
"""
import argparse
import fcntl
import json
import os
import random
import select
import sys
import termios
import threading
import time
import traceback
import tty

FAULT_KEYS = {"corrupt", "dup", "delay_ms", "both", "bps", "drop"}
EVENT_KEYS = {"stall", "cut"}


def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class Faults:
    def __init__(self, corrupt=None, dup=None, delay_ms=0, both=False, bps=None, drop=None):
        self.corrupt, self.dup, self.delay_ms = corrupt, dup, delay_ms
        self.both, self.bps, self.drop = both, bps, drop


def positive_int(settings, key):
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, not {value!r}")
    return value


def seconds(settings, key):
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 600:
        raise ValueError(f"{key} must be 0..600 seconds, not {value!r}")
    return float(value)


def parse_control(line, bps):
    """The faults (or None: unchanged) and events of one control line;
    ValueError for anything malformed."""
    try:
        settings = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(settings, dict):
        raise ValueError("not a JSON object")
    unknown = set(settings) - FAULT_KEYS - EVENT_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    events = {key: seconds(settings, key) for key in EVENT_KEYS & set(settings)}
    if not FAULT_KEYS & set(settings):
        return None, events
    drop = settings.get("drop")
    if drop is not None:
        if (
            not isinstance(drop, list)
            or len(drop) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in drop)
        ):
            raise ValueError(f"drop must be [START, LEN] of non-negative integers, not {drop!r}")
        drop = tuple(drop)
    delay_ms = settings.get("delay_ms", 0)
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not 0 <= delay_ms <= 10_000:
        raise ValueError(f"delay_ms must be 0..10000, not {delay_ms!r}")
    both = settings.get("both", False)
    if not isinstance(both, bool):
        raise ValueError(f"both must be true or false, not {both!r}")
    faults = Faults(
        positive_int(settings, "corrupt"),
        positive_int(settings, "dup"),
        delay_ms,
        both,
        positive_int(settings, "bps") if "bps" in settings else bps,
        drop,
    )
    return faults, events


def non_exclusive(fd):
    try:
        fcntl.ioctl(fd, termios.TIOCNXCL)
    except OSError:
        pass


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
        self.died = None  # the relay thread's exception, if it died

    def control(self, line):
        """Applies one control line; None, or why it was refused."""
        if self.died:
            return f"relay thread died: {self.died}"
        try:
            faults, events = parse_control(line, self.faults.bps)
        except ValueError as e:
            return str(e)
        with self.lock:
            now = time.monotonic()
            if faults is not None:
                self.faults = faults
                self.drop_base = self.sent
                self.paused_until = self.cut_until = 0.0
            if "stall" in events:
                self.paused_until = now + events["stall"]
            if "cut" in events:
                self.cut_until = now + events["cut"]
        return None

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
        try:
            self.relay()
        except BaseException as e:  # reported on the control line
            self.died = f"{type(e).__name__}: {e}"
            traceback.print_exc()

    def relay(self):
        # The line is free again at `line_free` (monotonic seconds): a byte
        # leaves no earlier than len/bps after the previous one, whatever
        # time the relay itself spends.
        line_free = time.monotonic()
        while not self.stop.is_set():
            # Cheap, and it undoes a killed client's exclusive open.
            non_exclusive(self.cli_slave)
            non_exclusive(self.dev_slave)
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
            refused = relay.control(line)
            print(f"error: {refused}" if refused else "ok", flush=True)
    relay.stop.set()


if __name__ == "__main__":
    main()
