"""python -m device_runners.fake_adbd --port 5555 --root DIR [--quota-bytes N] [--battery-trace TRACE.json]

Then `adb connect 127.0.0.1:5555`. Prints "listening on HOST:PORT" once it accepts connections (with
--port 0, the port the system chose).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device_runners.fake_adbd.server import FakeAdbd


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m device_runners.fake_adbd", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="folder that holds the device's files")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    ap.add_argument("--port", type=int, default=5555, help="TCP port; 0 picks a free one [5555]")
    ap.add_argument("--quota-bytes", type=int, default=None,
                    help="storage the device offers under /data; a push beyond it fails with ENOSPC")
    ap.add_argument("--battery-trace", type=Path, default=None,
                    help="serve this current/voltage trace as /sys/class/power_supply/battery (battery.py); "
                         "without it the device has no power meter")
    args = ap.parse_args(argv)
    adbd = FakeAdbd(args.root, args.host, args.port, args.quota_bytes, args.battery_trace)

    def stop(signum: int, _frame: object) -> None:  # leave no command of the device running
        adbd.shutdown()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = adbd.address
    print(f"listening on {host}:{port}", flush=True)
    adbd.serve_forever()


if __name__ == "__main__":
    main()
