"""python -m device_runners.fake_ios --socket PATH --root DIR --runner PATH [--udid UDID] [--ios-version 16.7]

Then point pymobiledevice3 at it: USBMUXD_SOCKET_ADDRESS=PATH (or HOST:PORT with --socket HOST:PORT). Prints
"listening on PATH" (or "listening on HOST:PORT", the chosen port for 0) once it accepts connections. SIGTERM and
SIGINT stop it and kill the apps it runs; a SIGKILL kills them too (they die with it).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device_runners.fake_ios.server import FakeIPhone


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m device_runners.fake_ios", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="usbmuxd's address: a unix socket path, or HOST:PORT for TCP")
    ap.add_argument("--root", type=Path, required=True, help="folder that holds the device's files")
    ap.add_argument("--runner", type=Path, required=True,
                    help="the host build of the native runner, which the runner app runs (its liblitert-lm.so "
                         "beside it)")
    ap.add_argument("--udid", default=None, help="the device's UDID [CHIPID-ECID of the product]")
    ap.add_argument("--ios-version", default="16.7", help="ProductVersion the device reports [16.7]")
    args = ap.parse_args(argv)
    if not args.runner.is_file():
        ap.error(f"--runner {args.runner}: no such file")
    try:
        device = FakeIPhone(args.root, args.runner.resolve(), args.socket, args.udid, args.ios_version)
    except ValueError as e:  # an iOS version the device cannot be
        ap.error(str(e))

    def stop(signum: int, _frame: object) -> None:  # leave no app of the device running
        device.shutdown()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {device.address}", flush=True)
    device.serve_forever()


if __name__ == "__main__":
    main()
