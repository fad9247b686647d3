"""The secure variant of the local broker: SASL/SCRAM, ACLs, an admin, optional TLS.

``syncbus kafka start --secure`` writes these settings instead of the open
PLAINTEXT ones:
- the client listener ``CLIENT`` speaks SASL/SCRAM-SHA-512 (SASL_SSL with ``--tls``);
  users are SCRAM credentials kept by the cluster itself;
- the KRaft ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``:
  whoever has no ACL may do nothing;
- one super user, ``syncbus-admin``, bootstrapped into the storage at format time;
  its password is generated once and kept in ``<dir>/admin.password`` (mode 0600);
- the controller listener speaks SASL/PLAIN with the admin as its only user, so a
  client that finds its port still cannot use it.
With ``--tls``, a CA and a broker certificate for 127.0.0.1 and localhost are made
with openssl in ``<dir>/tls``; clients trust ``<dir>/tls/ca.pem``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from syncbus.core.access import ADMIN
from syncbus.credentials import generate_password, write_private

KEYSTORE_FILE = "broker.p12"


class SecureSetupError(RuntimeError):
    """The admin password or the TLS certificates could not be made."""


def admin_password_file(dir: Path) -> Path:
    return dir / "admin.password"


def admin_password(dir: Path) -> str:
    """The admin's password of the broker in ``dir``, made on first use."""
    path = admin_password_file(dir)
    if not path.exists():
        write_private(path, generate_password() + "\n")
    return path.read_text().strip()


def ca_file(dir: Path) -> Path:
    return dir / "tls" / "ca.pem"


def _jaas(module: str, password: str, extra: str = "") -> str:
    return (f'org.apache.kafka.common.security.{module} required username="{ADMIN}" '
            f'password="{password}"{extra};')


def secure_properties(dir: Path, port: int, controller_port: int, tls: bool) -> str:
    """The listener and authorizer lines of a secure broker (with the admin's password)."""
    password = admin_password(dir)
    client_protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    lines = [
        f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=CLIENT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=CLIENT",
        f"listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:{client_protocol}",
        "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.client.scram-sha-512.sasl.jaas.config="
        + _jaas("scram.ScramLoginModule", password),
        "listener.name.controller.plain.sasl.jaas.config="
        + _jaas("plain.PlainLoginModule", password, f' user_{ADMIN}="{password}"'),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN}",
    ]
    if tls:
        keystore_password = _ensure_certificates(dir, password)
        lines += [
            "listener.name.client.ssl.keystore.type=PKCS12",
            f"listener.name.client.ssl.keystore.location={dir / 'tls' / KEYSTORE_FILE}",
            f"listener.name.client.ssl.keystore.password={keystore_password}",
            "listener.name.client.ssl.truststore.type=PEM",  # the broker talks to itself too
            f"listener.name.client.ssl.truststore.location={ca_file(dir)}",
        ]
    return "\n".join(lines) + "\n"


def format_arguments(dir: Path) -> list[str]:
    """Arguments of the storage format step that create the admin's SCRAM credential."""
    return ["--add-scram", f"SCRAM-SHA-512=[name={ADMIN},password={admin_password(dir)}]"]


def _openssl(*args: str, env: dict[str, str] | None = None) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SecureSetupError("--tls needs `openssl` on PATH: apt-get install openssl")
    proc = subprocess.run([openssl, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SecureSetupError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def _ensure_certificates(dir: Path, password: str) -> str:
    """A CA and a broker certificate signed by it, made once; returns the keystore password."""
    tls = dir / "tls"
    keystore = tls / KEYSTORE_FILE
    if keystore.exists():
        return password
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    ca_key, ca_pem = tls / "ca.key", tls / "ca.pem"
    key, csr, cert = tls / "broker.key", tls / "broker.csr", tls / "broker.pem"
    ext = tls / "san.ext"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
             "-subj", "/CN=syncbus local CA", "-keyout", str(ca_key), "-out", str(ca_pem))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(csr))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "825", "-extfile", str(ext), "-out", str(cert))
    _openssl("pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca_pem),
             "-name", "broker", "-passout", "env:SYNCBUS_KEYSTORE_PASSWORD", "-out", str(keystore),
             env={"SYNCBUS_KEYSTORE_PASSWORD": password})  # never on a command line
    for path in (ca_key, key, keystore):
        os.chmod(path, 0o600)
    return password
