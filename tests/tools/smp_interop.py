"""Drives a real `tumorxai-device serve --serial` with a stock MCUmgr client
(smpclient 7.3.0 from PyPI, independent of our codec) over pseudo-terminals:

    python tests/tools/smp_interop.py DEVICE_BIN STATE WORK BUNDLE

Two pty pairs joined by a relay (tests/tools/serial_relay.py; the device
opens one slave, the client the other), so the bytes cross real tty devices
both ways. Steps: MCUmgr
parameters, echo, image state, upload BUNDLE, state, test (by hash), reset,
state again. Prints one JSON object with what each step returned; the Rust
test (device/tests/smp_interop.rs) checks it against the state directory.
"""
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time

from smpclient import SMPClient
from smpclient.generics import error, success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import EchoWrite, MCUMgrParametersRead, ResetWrite
from smpclient.transport.serial import SMPSerialTransport

from serial_relay import Relay


def images(response):
    return [
        {"slot": i.slot, "version": i.version, "hash": bytes(i.hash).hex() if i.hash else None,
         "active": i.active, "confirmed": i.confirmed, "pending": i.pending}
        for i in response.images
    ]


async def client_steps(address, bundle):
    out = {}
    transport = SMPSerialTransport()
    async with SMPClient(transport, address, timeout_s=20.0) as client:
        params = await client.request(MCUMgrParametersRead())
        out["params"] = {"buf_size": params.buf_size, "buf_count": params.buf_count}
        echo = await client.request(EchoWrite(d="tumorxai"))
        out["echo"] = echo.r
        out["before"] = images(await client.request(ImageStatesRead()))
        offsets = []
        async for off in client.upload(bundle, subsequent_timeout_s=20.0):
            offsets.append(off)
        out["upload_offsets"] = len(offsets)
        out["upload_last"] = offsets[-1]
        out["staged"] = images(await client.request(ImageStatesRead()))
        tested = await client.request(
            ImageStatesWrite(hash=hashlib.sha256(bundle).digest(), confirm=False))
        out["test_ok"] = bool(success(tested))
        reset = await client.request(ResetWrite())
        out["reset_ok"] = not error(reset)
        # The reload runs between inbox polls.
        for _ in range(100):
            await asyncio.sleep(0.2)
            after = images(await client.request(ImageStatesRead()))
            if after and after[0]["version"] != out["before"][0]["version"]:
                break
        out["after"] = after
    return out


def main():
    device_bin, state, work, bundle_path = sys.argv[1:5]
    bundle = open(bundle_path, "rb").read()
    relay = Relay().start()
    dev_path, cli_path = relay.device, relay.client
    env = dict(os.environ, TUMORXAI_STATE_DIR=state)
    device = subprocess.Popen(
        [device_bin, "serve", "--inbox", os.path.join(work, "inbox"),
         "--outbox", os.path.join(work, "outbox"), "--poll-ms", "100",
         "--serial", dev_path, "--baud", "115200"],
        env=env, stderr=open(os.path.join(work, "device.log"), "wb"))
    try:
        time.sleep(1.5)
        if device.poll() is not None:
            raise SystemExit("the device exited: " + open(os.path.join(work, "device.log")).read())
        result = asyncio.run(client_steps(cli_path, bundle))
    finally:
        device.terminate()
        device.wait(timeout=20)
        relay.stop.set()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
