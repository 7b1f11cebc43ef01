#!/usr/bin/env python3
"""Scanner → device → PACS latency, as JSON: a 30-slice MR series (tests/
tools/make_series.py) pushed slice by slice with dcmtk's storescu to
`tumorxai-device serve --dicom-port … --send-to ORTHANC@…`, and the time
from each slice's C-STORE response (the device holds the slice) to the
moment both its Secondary Capture and its SR are in Orthanc (Orthanc's
REST change feed, polled every 5 ms), beside the device's triage time of
the same slices (its JSON answers' timings).

    .venv-tools/bin/python device/bench/pacs_roundtrip.py [--slices 30] [--interval-ms 0]

Starts its own Orthanc (Debian package) and device on free loopback ports,
in a temporary folder it removes. --interval-ms spaces the pushes (0: back
to back, as a scanner sends a series). The binary: $TUMORXAI_DEVICE, else
the newer of target/release/ and target/debug/tumorxai-device.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SC = "1.2.840.10008.5.1.4.1.1.7"
SR = "1.2.840.10008.5.1.4.1.1.88.34"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summary(values):
    return {"median": round(statistics.median(values), 1),
            "p95": round(percentile(values, 0.95), 1),
            "max": round(max(values), 1)}


def device_binary():
    if os.environ.get("TUMORXAI_DEVICE"):
        return os.environ["TUMORXAI_DEVICE"]
    # The newer build: a stale release binary may lack today's options.
    built = [ROOT / "target" / p / "tumorxai-device" for p in ["release", "debug"]]
    built = [p for p in built if p.exists()]
    if built:
        return str(max(built, key=lambda p: p.stat().st_mtime))
    sys.exit("build the device first: cargo build --release -p tumorxai-device")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=30)
    parser.add_argument("--interval-ms", type=float, default=0)
    args = parser.parse_args()
    binary = device_binary()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, ROOT / "tests/tools/make_series.py", str(args.slices),
                        tmp / "series"], check=True)
        series = json.loads((tmp / "series/series.json").read_text())
        http, pacs, dev = free_port(), free_port(), free_port()
        config = {"Name": "bench", "HttpPort": http, "DicomPort": pacs, "DicomAet": "ORTHANC",
                  "StorageDirectory": str(tmp / "orthanc"), "IndexDirectory": str(tmp / "orthanc"),
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": []}
        (tmp / "orthanc.json").write_text(json.dumps(config))
        processes = [subprocess.Popen(["/usr/sbin/Orthanc", tmp / "orthanc.json"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        (tmp / "inbox").mkdir()
        processes.append(subprocess.Popen(
            [binary, "serve", "--poll-ms", "10", "--settle-ms", "0",
             "--inbox", tmp / "inbox", "--outbox", tmp / "outbox", "--audit", tmp / "audit",
             "--state-dir", tmp / "state", "--dicom-bind", "127.0.0.1", "--dicom-port", str(dev),
             "--send-to", f"ORTHANC@127.0.0.1:{pacs}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp / "device.log", "w")))
        try:
            run(args, tmp, series, http, dev, binary)
        finally:
            for p in processes:
                p.kill()
                p.wait()


def get(http, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}") as r:
        return json.loads(r.read())


def run(args, tmp, series, http, dev, binary):
    deadline = time.time() + 60
    while True:
        echo = subprocess.run(["echoscu", "-aet", "SCANNER", "-aec", "TUMORXAI", "127.0.0.1",
                               str(dev)], capture_output=True)
        try:
            get(http, "/system")
            if echo.returncode == 0:
                break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("the device or Orthanc did not start:\n" + (tmp / "device.log").read_text()
                     + echo.stderr.decode())
        time.sleep(0.1)
    seen, stop = {}, threading.Event()
    since = get(http, "/changes?last")["Last"]

    def poll():
        nonlocal since
        while not stop.is_set():
            changes = get(http, f"/changes?since={since}&limit=1000")
            now = time.monotonic()
            for change in changes["Changes"]:
                if change["ChangeType"] == "NewInstance":
                    seen.setdefault(change["ID"], now)
            since = changes["Last"]
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    received = []
    for slice_ in series["slices"]:
        subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "TUMORXAI", "127.0.0.1", str(dev),
                        tmp / "series" / slice_["file"]], check=True, capture_output=True)
        received.append(time.monotonic())
        time.sleep(args.interval_ms / 1000)
    expected = 2 * len(series["slices"])
    deadline = time.time() + 300
    while len(seen) < expected and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    poller.join()
    if len(seen) < expected:
        sys.exit(f"only {len(seen)} of {expected} results reached Orthanc")
    stored = {}
    for instance, at in seen.items():
        tags = get(http, f"/instances/{instance}/simplified-tags")
        if tags.get("SOPClassUID") in (SC, SR):
            number = int(tags["InstanceNumber"])
            stored[number] = max(stored.get(number, 0), at)
    latency = [1000 * (stored[i + 1] - t) for i, t in enumerate(received)]
    triage = []
    for answer in (tmp / "outbox").glob("*.json"):
        timings = json.loads(answer.read_text()).get("timings_ms")
        if timings:
            triage.append(sum(timings.values()))
    # The device's own log: each C-STORE, command to response.
    stores = [int(m) for m in re.findall(r"\(status 0x[0-9a-f]+, (\d+) ms\)",
                                         (tmp / "device.log").read_text())]
    print(json.dumps({
        "slices": len(received),
        "interval_ms": args.interval_ms,
        "received_to_stored_in_pacs_ms": summary(latency),
        "triage_alone_ms": summary(triage),
        "c_store_per_object_ms": summary(stores),
        "series_received_to_last_result_stored_s": round(max(stored.values()) - received[0], 2),
        "binary": str(Path(binary).relative_to(ROOT)) if binary.startswith(str(ROOT)) else binary,
        "cpus": os.cpu_count(),
    }, indent=1))


if __name__ == "__main__":
    main()
