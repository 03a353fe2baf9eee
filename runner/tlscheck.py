"""Load-time checks of the files a ``tls:`` block names: readable, of the right kind, and matching.

A CA bundle that is not PEM, a client key that does not belong to its
certificate or a key protected by a passphrase would otherwise show up only
at run time, as every handshake failing (or, worse, OpenSSL asking for the
passphrase on the terminal in the middle of a load test). The loader calls
:func:`tls_problems` on the raw scenario data, like the flow checks, so each
problem names ``file:line`` and the field (``defaults.tls.key``).

Settings merge field by field, as the compiler merges them: a request's
``tls`` block replaces only the fields it sets, so a key given in ``defaults``
may meet a certificate given on a request. Each file is checked once where it
is written; each certificate/key pair that some request would use is checked
once. Messages name files and fields, never what is in them.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Any, Callable

from .errors import Problem

Locate = Callable[[tuple], tuple]

FILE_FIELDS = ("ca", "cert", "key")
#: Largest certificate or key file read to look for its PEM blocks; real ones are a few KiB.
MAX_PEM_BYTES = 1 << 20
_CERTIFICATE_MARKERS = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN TRUSTED CERTIFICATE-----")
_KEY_MARKER = b"PRIVATE KEY-----"
_ENCRYPTED_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
ENCRYPTED_KEY = ("encrypted private keys are not supported (a load test cannot stop to ask for a passphrase); "
                 "use a decrypted copy of the key, e.g. from 'openssl pkey -in KEY -out PLAIN.pem'")


class _PassphraseRefused(Exception):
    """Raised by the password callback: a key that needs a passphrase is refused, never prompted for."""


def _refuse_passphrase() -> bytes:
    raise _PassphraseRefused


def resolve_tls_path(written: str, base_dir: Path | str | None) -> str:
    """The absolute path of a ``tls`` file: relative paths start at the scenario file's directory."""
    if base_dir is not None and not os.path.isabs(written):
        return os.path.abspath(os.path.join(base_dir, written))
    return os.path.abspath(written)


def tls_problems(data: dict, locate: Locate, source: str) -> list[Problem]:
    """Problems of every ``tls`` file and of every certificate/key pair a request would use."""
    from .flowcheck import step_lists

    defaults = data.get("defaults")
    defaults_block = defaults.get("tls") if isinstance(defaults, dict) else None
    blocks: list[tuple[tuple, dict]] = []
    if isinstance(defaults_block, dict):
        blocks.append((("defaults", "tls"), defaults_block))
    plain_request = False  # a request without a tls block of its own uses defaults.tls as it is
    for base, steps in step_lists(data):
        for path, step in steps:
            if not isinstance(step, dict) or step.get("think") is not None:
                continue
            if isinstance(step.get("tls"), dict):
                blocks.append((base + path + ("tls",), step["tls"]))
            else:
                plain_request = True
    if not blocks:
        return []
    checker = _Checker(Path(source).parent, locate)
    for path, block in blocks:
        for name in FILE_FIELDS:
            value = block.get(name)
            if isinstance(value, str) and value.strip() and value.isprintable():  # else the schema says why
                checker.check_file(path + (name,), name, value)
    merged_defaults = _fields(("defaults", "tls"), defaults_block)
    if plain_request:
        checker.check_pair(merged_defaults)
    for path, block in blocks:
        if path != ("defaults", "tls"):
            checker.check_pair({**merged_defaults, **_fields(path, block)})
    return checker.problems


def _fields(path: tuple, block: Any) -> dict[str, tuple[tuple, Any]]:
    """The file fields a block sets (``null`` included: it unsets the default), with their field paths."""
    if not isinstance(block, dict):
        return {}
    return {name: (path + (name,), block[name]) for name in ("cert", "key") if name in block}


class _Checker:
    """Collects problems; remembers which files passed their own check, so a pair is judged only on good files."""

    def __init__(self, base_dir: Path, locate: Locate):
        self.base_dir = base_dir
        self.locate = locate
        self.problems: list[Problem] = []
        self.good: dict[tuple, tuple[str, bytes]] = {}  # field path -> (absolute path, contents read)
        self.paired: set[tuple] = set()

    def report(self, where: tuple, message: str) -> None:
        from .loader import format_path

        self.problems.append(Problem(*self.locate(where), format_path(where), message))

    def check_file(self, where: tuple, kind: str, written: str) -> None:
        from .loader import excerpt

        absolute = resolve_tls_path(written, self.base_dir)
        shown = excerpt(written)
        try:
            info = os.stat(absolute)
        except FileNotFoundError:
            where_looked = "" if os.path.isabs(written) else f" (looked for {excerpt(absolute)}: relative paths " \
                                                            "start at the scenario file's directory)"
            self.report(where, f"file not found: {shown}{where_looked}")
            return
        except OSError as exc:
            self.report(where, f"cannot read {shown}: {exc.strerror or exc}")
            return
        if not stat.S_ISREG(info.st_mode):
            self.report(where, f"{shown} is not a regular file")
            return
        if info.st_size > MAX_PEM_BYTES and kind != "ca":
            self.report(where, f"{shown} is larger than {MAX_PEM_BYTES >> 20} MiB: not a certificate or key file")
            return
        contents = b""  # a CA bundle is read by the ssl module itself
        if kind != "ca":
            try:
                with open(absolute, "rb") as handle:
                    contents = handle.read(MAX_PEM_BYTES)
            except OSError as exc:
                self.report(where, f"cannot read {shown}: {exc.strerror or exc}")
                return
        reason = {"ca": _ca_reason, "cert": _cert_reason, "key": _key_reason}[kind](absolute, contents)
        if reason is not None:
            self.report(where, f"{shown}: {reason}")
        else:
            self.good[where] = (absolute, contents)

    def check_pair(self, fields: dict[str, tuple[tuple, Any]]) -> None:
        """The certificate and key one request would present: both given as needed, and matching."""
        cert_where, cert = fields.get("cert", (None, None))
        key_where, key = fields.get("key", (None, None))
        if cert is None and key is None:
            return
        if (cert_where, key_where) in self.paired:
            return
        self.paired.add((cert_where, key_where))
        if cert is None:
            if isinstance(key, str):
                self.report(key_where, "a private key needs its certificate: set 'cert' too "
                                       "(in the same tls block or in defaults.tls)")
            return
        if cert_where not in self.good or (key is not None and key_where not in self.good):
            return  # the file's own problem is reported already (or the schema reports a wrong type)
        cert_path, cert_contents = self.good[cert_where]
        if key is None:
            if not any(marker in cert_contents for marker in _ENCRYPTED_MARKERS) and _KEY_MARKER not in cert_contents:
                self.report(cert_where, "the file holds no private key; give the key's file in 'key'")
                return
        key_path = self.good[key_where][0] if key is not None else None
        reason = _pair_reason(cert_path, key_path)
        if reason is not None:
            self.report(key_where if key is not None else cert_where, reason)


def _ca_reason(path: str, _contents: bytes) -> str | None:
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        return f"not a PEM bundle of CA certificates ({exc.reason or exc.library or 'unreadable'})"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None


def _cert_reason(_path: str, contents: bytes) -> str | None:
    if any(marker in contents for marker in _CERTIFICATE_MARKERS):
        return None
    if _KEY_MARKER in contents:
        return "holds a private key but no certificate (are 'cert' and 'key' swapped?)"
    return "holds no PEM certificate (a '-----BEGIN CERTIFICATE-----' block)"


def _key_reason(_path: str, contents: bytes) -> str | None:
    if any(marker in contents for marker in _ENCRYPTED_MARKERS):
        return ENCRYPTED_KEY
    if _KEY_MARKER in contents:
        return None
    if any(marker in contents for marker in _CERTIFICATE_MARKERS):
        return "holds a certificate but no private key (are 'cert' and 'key' swapped?)"
    return "holds no PEM private key (a '-----BEGIN ... PRIVATE KEY-----' block)"


def _pair_reason(cert_path: str, key_path: str | None) -> str | None:
    """Load the pair as the engines will; a key wanting a passphrase raises instead of prompting."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    except _PassphraseRefused:
        return ENCRYPTED_KEY
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the private key does not belong to the certificate in 'cert' (key values mismatch)"
        return f"the certificate and key cannot be loaded ({exc.reason or exc.library or 'unreadable PEM'})"
    except OSError as exc:
        return f"the certificate and key cannot be read: {exc.strerror or exc}"
    return None
