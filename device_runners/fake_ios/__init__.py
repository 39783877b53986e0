"""A test iPhone that speaks usbmuxd's and lockdownd's protocols on a unix (or TCP) socket, so that unmodified
pymobiledevice3, pointed at it with USBMUXD_SOCKET_ADDRESS, reaches it the way it reaches a phone.

It is a protocol-level stand-in, not an emulator: usbmuxd (ListDevices, ReadBUID, ReadPairRecord, Connect,
Listen), lockdownd (QueryType, GetValue, StartSession with TLS on a pair record it generated, StartService,
StopSession), AFC, house_arrest, installation_proxy, DVT (DTX framing; processcontrol and deviceinfo),
crashreportmover and crashreportcopymobile, and a mobile_image_mounter that reports the Developer image as
mounted. An "app" it launches runs this host's build of the native runner in the app's Documents folder, as the
iOS runner app would (device_runners/transports/ios_contract.py).

The device's files live under --root with the iPhone's own paths (ROOT/private/var/mobile/Media is AFC's root,
ROOT/private/var/containers/Bundle/Application/UUID/X.app an installed app, ...), so what is installed survives
a restart. ROOT/faults.json, read at each launch, injects app faults ({"app": "crash"} or {"app": "hang"});
ROOT/fake_ios.log records what the host asked for.

Run it with `python -m device_runners.fake_ios --socket PATH --root DIR --runner PATH` (see __main__.py).
"""
