"""A throwaway certificate authority for the built-in target, and a plan that trusts only it.

An https target needs a certificate its clients can verify. For the built-in
target nothing outside one run should ever trust that certificate, so each
start makes a fresh CA and a server certificate for the loopback names
(``127.0.0.1``, ``::1``, ``localhost``) with ``trustme``, writes them to a
private temporary directory, and removes them when the target stops. The
run then trusts that CA and nothing else (:func:`trust_ca`), so it verifies
certificates exactly as it would against a real server: the handshakes it
measures are the full, verified ones, and a client that does not trust the
CA fails verification as it should.

The keys are ECDSA (P-256): making a CA and a certificate takes a few
milliseconds, against about a tenth of a second for RSA-2048, and every
``runner run`` of an https scenario pays it once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace

from ..plan import Plan, RequestPlan, TlsPlan

__all__ = ["LOOPBACK_NAMES", "ThrowawayCertificate", "trust_ca"]

#: What the server certificate is valid for: every name a loopback URL may use.
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


class ThrowawayCertificate:
    """A fresh CA and a server certificate signed by it, as PEM files in a private directory.

    ``ca_file`` is what clients trust; ``cert_file`` (the server certificate
    followed by its chain) and ``key_file`` are what the server loads. The
    directory is mode 0700 and lives until :meth:`remove` (also the context
    manager's exit); nothing in it is ever written to the repository.
    """

    def __init__(self, names: tuple[str, ...] = LOOPBACK_NAMES) -> None:
        # Imported here: only an https target needs trustme and cryptography,
        # and importing them costs about a tenth of a second.
        import trustme

        ca = trustme.CA(key_type=trustme.KeyType.ECDSA, organization_name="runner built-in target")
        leaf = ca.issue_cert(*names, key_type=trustme.KeyType.ECDSA)
        # mkdtemp creates the directory readable by this user only (0700).
        self.directory: str | None = tempfile.mkdtemp(prefix="runner-tls-")
        try:
            self.ca_file = os.path.join(self.directory, "ca.pem")
            self.cert_file = os.path.join(self.directory, "server-chain.pem")
            self.key_file = os.path.join(self.directory, "server-key.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            with open(self.cert_file, "wb") as chain:
                for blob in leaf.cert_chain_pems:
                    chain.write(blob.bytes())
            descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as key:
                key.write(leaf.private_key_pem.bytes())
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Delete the files (idempotent)."""
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> "ThrowawayCertificate":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


def trust_ca(plan: Plan, ca_file: str) -> Plan:
    """``plan`` with every request that verifies against the system's CAs verifying against ``ca_file`` instead.

    A request without a ``tls`` block, or with ``verify`` on and no ``ca``,
    gets ``ca=ca_file`` (its other settings kept); ``verify: false`` and an
    explicit ``ca`` are what the scenario asked for and stay as they are. The
    flows hold the same requests as ``plan.flow``, so they are rebuilt with
    the new ones: engines and virtual users may reach a request either way.
    """
    changed: dict[int, RequestPlan] = {}
    for request in plan.flow:
        tls = request.tls
        if tls is None:
            changed[request.index] = replace(request, tls=TlsPlan(ca=ca_file))
        elif tls.verify and tls.ca is None:
            changed[request.index] = replace(request, tls=replace(tls, ca=ca_file))
    if not changed:
        return plan

    def swap(steps: tuple) -> tuple:
        return tuple(changed.get(step.index, step) if isinstance(step, RequestPlan) else step for step in steps)

    flows = tuple(replace(flow, once=swap(flow.once), steps=swap(flow.steps)) for flow in plan.flows)
    return replace(plan, flow=swap(plan.flow), flows=flows)
