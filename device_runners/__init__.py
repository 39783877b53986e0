"""Devices and the native runner: a Device is a Transport (host, adb, ios, ssh) plus what is known of it."""
