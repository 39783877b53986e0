"""The pairing the test iPhone and its one host share, made once and kept under the root.

A real pairing is made by the host (libimobiledevice's or pymobiledevice3's `pair`): it receives the device's
public key, makes a root CA, a host certificate and a device certificate signed by that root, and both sides keep
the record; usbmuxd hands it to every client with ReadPairRecord. This module plays both sides of that once:
the device's RSA key (DevicePublicKey), and the host's record (HostID, SystemBUID, HostCertificate,
HostPrivateKey, RootCertificate, RootPrivateKey, DeviceCertificate, WiFiMACAddress, EscrowBag) with the same
certificate shapes pymobiledevice3 and libimobiledevice make (empty names, serial 1, v3 with BasicConstraints and
KeyUsage). lockdownd then accepts that HostID alone and runs TLS as the server with the device certificate,
asking the host for its certificate and checking it against the record's root.
"""

from __future__ import annotations

import datetime
import os
import plistlib
import ssl
import tempfile
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

_KEY_FILE = "device_key.pem"
_RECORD_FILE = "host_pair_record.plist"


class Pairing:
    def __init__(self, folder: Path, wifi_address: str):
        """Load the pairing kept in `folder`, or make it there."""
        folder.mkdir(parents=True, exist_ok=True)
        key_path, record_path = folder / _KEY_FILE, folder / _RECORD_FILE
        if key_path.is_file() and record_path.is_file():
            device_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(device_key, RSAPrivateKey)
            record = plistlib.loads(record_path.read_bytes())
        else:
            device_key = _new_key()
            record = _make_host_record(device_key.public_key(), wifi_address)
            _write_atomic(key_path, _private_pem(device_key))
            _write_atomic(record_path, plistlib.dumps(record))
        self.device_key: RSAPrivateKey = device_key
        self.host_record: dict[str, Any] = record
        self._folder = folder
        self._server_context: ssl.SSLContext | None = None

    @property
    def host_id(self) -> str:
        return self.host_record["HostID"]

    @property
    def system_buid(self) -> str:
        return self.host_record["SystemBUID"]

    @property
    def device_public_key_pem(self) -> bytes:
        """DevicePublicKey as lockdownd reports it: PKCS#1 ("RSA PUBLIC KEY") PEM."""
        return self.device_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.PKCS1)

    def server_context(self) -> ssl.SSLContext:
        """lockdownd's side of TLS: the device certificate, and the host's certificate required: the pairing's
        own, so that a host with another record is refused in the handshake.

        The pairing's certificates all have empty names, so OpenSSL takes the host certificate for a self-signed
        one and cannot chain it to the root; instead the host certificate itself is the trust anchor (partial
        chain), which accepts exactly the record's certificate, and proves the host holds its key."""
        if self._server_context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_flags = (context.verify_flags & ~ssl.VERIFY_X509_STRICT) | ssl.VERIFY_X509_PARTIAL_CHAIN
            with tempfile.TemporaryDirectory(dir=self._folder) as tmp:
                chain = Path(tmp) / "device.pem"
                chain.write_bytes(self.host_record["DeviceCertificate"] + _private_pem(self.device_key))
                context.load_cert_chain(chain)
            context.load_verify_locations(cadata=self.host_record["HostCertificate"].decode())
            context.verify_mode = ssl.CERT_REQUIRED
            self._server_context = context
        return self._server_context


def _make_host_record(device_public_key: RSAPublicKey, wifi_address: str) -> dict[str, Any]:
    root_key, host_key = _new_key(), _new_key()
    root_cert = _certificate(root_key.public_key(), root_key, ca=True)
    host_cert = _certificate(host_key.public_key(), root_key, ca=False)
    device_cert = _certificate(device_public_key, root_key, ca=False)
    return {
        "DeviceCertificate": _cert_pem(device_cert),
        "HostCertificate": _cert_pem(host_cert),
        "HostPrivateKey": _private_pem(host_key),
        "RootCertificate": _cert_pem(root_cert),
        "RootPrivateKey": _private_pem(root_key),
        "HostID": str(uuid.uuid4()).upper(),
        "SystemBUID": str(uuid.uuid4()).upper(),
        "WiFiMACAddress": wifi_address,
        "EscrowBag": os.urandom(32),  # what a locked device would want back from the host; unused here
    }


def _certificate(public_key: RSAPublicKey, signer: RSAPrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    usage = x509.KeyUsage(digital_signature=not ca, key_encipherment=not ca, key_cert_sign=ca, crl_sign=ca,
                          content_commitment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([])).issuer_name(x509.Name([]))
               .public_key(public_key).serial_number(1)
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(usage, critical=True))
    return builder.sign(signer, hashes.SHA256())


def _new_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    os.replace(tmp, path)
