"""A test device that speaks adb's device-side protocol over TCP, so the real adb server accepts it with
`adb connect 127.0.0.1:PORT`, and the harness reaches it the way it reaches a phone.

It answers CNXN without AUTH, serves `shell:` (v1), `shell,v2,...:` (exit codes, separate stderr), `sync:`
(STAT/STA2/LST2/LIST/SEND/RECV) and `tcp:PORT` forwards, and runs commands on this host in a folder with
Android's paths (sandbox.py). It is a protocol-level stand-in for a phone, not an emulator: the binaries it
runs are this host's.
"""
