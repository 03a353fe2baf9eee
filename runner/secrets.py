"""Secrets in scenarios: ``${env:NAME}`` and ``${file:PATH}`` references, and redaction.

A scenario file stays free of credentials: it names where they come from,
and the compiler fills them in. Every value that came from such a reference,
every value of a credential header (Authorization, Cookie,
Proxy-Authorization, X-API-Key), and the password of a target URL
(``http://user:password@host``) is remembered so that reports and error
messages can be scrubbed before anything is written.

Scrubbing looks for a secret in every form a reporter can give it: as is,
JSON-escaped (``\\"``, ``\\u00e9``), HTML/XML-escaped (``&quot;``, ``&#39;``,
``&#10;``), CSV-quoted (``""``), percent-encoded (``quote`` and
``quote_plus``), one encoding nested in another (JSON inside HTML), and
base64 (a secret that is the ``user:password`` of Basic auth). Matching
raw bytes only would let ``p"ss`` through every JSON report. Python's
``repr`` escapes count too: exception messages quote values with ``!r``.

Every secret must be at least :data:`MIN_SECRET_LENGTH` characters long: a
shorter one cannot be scrubbed without erasing ordinary text ("ab" occurs in
every report), so it is rejected when the scenario is loaded, with the
``file:line:col`` of the field and the name of the reference.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
MASK = "***"
#: Shorter secrets are an error at load time: scrubbing them would erase ordinary text.
MIN_SECRET_LENGTH = 4
_TOO_SHORT = (f"is shorter than {MIN_SECRET_LENGTH} characters; runner cannot scrub so short a secret "
              f"from reports without erasing ordinary text, so it refuses it")


# -- references ---------------------------------------------------------------------------------

def missing_references(text: str, base_dir: Path | None = None, field: tuple = ()) -> list[str]:
    """Why the secrets in ``text`` (the value of ``field``) cannot be used, as readable phrases.

    A reference that cannot be resolved, a resolved value that is too short
    to scrub, a credential header or a target URL password that is too short.
    No phrase ever contains a value.
    """
    if field == ("target",):  # references are not resolved in the target; its password is a secret
        return [f"the password in the target URL {_TOO_SHORT}"] if _too_short(url_credentials(text)[2] or "") else []
    problems = []
    for kind, name in REFERENCE.findall(text):
        if kind == "env" and name not in os.environ:
            problems.append(f"environment variable {name} is not set")
        elif kind == "file" and not _file_path(name, base_dir).is_file():
            problems.append(f"secret file {name} does not exist")
        else:
            try:
                value = _reference_value(kind, name, base_dir)
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"secret file {name} cannot be read as UTF-8 text ({type(exc).__name__})")
                continue
            if _too_short(value):
                problems.append(f"the value of ${{{kind}:{name}}} {_TOO_SHORT}")
    if not problems and _is_credential_header(field) and _too_short(resolve(text, set(), base_dir)):
        problems.append(f"the {field[-1]} header value {_TOO_SHORT}")
    return problems


def resolve(text: str, found: set[str], base_dir: Path | None = None) -> str:
    """Replace every reference with its value; add the values to ``found``."""
    def substitute(match: re.Match) -> str:
        value = _reference_value(*match.groups(), base_dir)
        found.add(value)
        return value

    return REFERENCE.sub(substitute, text)


def _reference_value(kind: str, name: str, base_dir: Path | None) -> str:
    if kind == "env":
        return os.environ[name]
    return _file_path(name, base_dir).read_text(encoding="utf-8").strip()


def _file_path(name: str, base_dir: Path | None) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _too_short(value: str) -> bool:
    """Empty is fine (there is nothing to leak); 1 to 3 characters is not."""
    return 0 < len(value) < MIN_SECRET_LENGTH


def _is_credential_header(field: tuple) -> bool:
    return len(field) >= 2 and field[-2] == "headers" and str(field[-1]).lower() in SENSITIVE_HEADERS


def too_short(secrets: Iterable[str]) -> bool:
    """True when any secret is too short to scrub (the compiler's last line of defence)."""
    return any(_too_short(secret) for secret in secrets)


# -- credentials in the target URL --------------------------------------------------------------

def url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, user, password)``, user and password percent-decoded.

    ``http://me:p%40ss@host:8080/api`` -> ``("http://host:8080/api", "me", "p@ss")``;
    a URL without userinfo comes back unchanged with ``None, None``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password) if colon else None


def basic_authorization(user: str, password: str | None) -> str:
    """The ``Authorization`` value that sends ``user:password`` as HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")


def url_secrets(url: str) -> set[str]:
    """What must never be shown of a URL's credentials: the password, ``user:password`` and its base64.

    Both the decoded and the as-written (percent-encoded) password are kept.
    A user name alone is not a secret.
    """
    _, user, password = url_credentials(url)
    if not password:
        return set()
    written = urlsplit(url).netloc.rpartition("@")[0]
    pair = f"{user}:{password}"
    return {password, written.partition(":")[2], pair, written, basic_authorization(user or "", password)[6:]}


def with_authorization(flow: tuple, value: str) -> tuple:
    """``flow`` (RequestPlans) with ``Authorization: value`` on every request that has none of its own."""
    def has_own(request) -> bool:
        names = [name for name, _ in request.headers] + [name for name, _ in request.header_templates]
        return any(name.lower() == "authorization" for name in names)

    return tuple(request if has_own(request) else replace(request, headers=request.headers + (("Authorization", value),))
                 for request in flow)


# -- redaction ----------------------------------------------------------------------------------

def redact(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every secret, in any encoding a reporter may give it, replaced by ``***``."""
    pattern = _pattern(tuple(sorted({secret for secret in secrets if secret})))
    return data if pattern is None else pattern.sub(MASK.encode(), data)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """:func:`redact` for text (messages on stderr)."""
    return redact(text.encode("utf-8", "surrogateescape"), secrets).decode("utf-8", "surrogateescape")


@lru_cache(maxsize=16)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern | None:
    """One regular expression matching every secret, and its base64, in every encoding."""
    if not secrets:
        return None
    targets = {secret: b"" for secret in secrets}
    for secret in secrets:
        raw = secret.encode()
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            targets.setdefault(encoded.decode("ascii").rstrip("="), _BASE64_PADDING)
    # Longest first, so a secret that contains another is masked whole.
    ordered = sorted(targets, key=lambda target: (-len(target), target))
    alternation = b"|".join(b"".join(_character_pattern(c) for c in target) + targets[target] for target in ordered)
    return re.compile(_first_byte_filter(ordered) + b"(?:" + alternation + b")")


#: The ``=`` that may end base64, as is or percent-encoded.
_BASE64_PADDING = b"(?:=|%3[dD]){0,2}"


def _first_byte_filter(targets: list[str]) -> bytes:
    """A lookahead on the bytes a match can start with: most positions of a report fail it at once."""
    first_forms = set().union(*(_character_forms(target[0]) for target in targets))
    if b"" in first_forms:
        return b""
    return b"(?=[" + b"".join(re.escape(bytes([form[0]])) for form in sorted(first_forms)) + b"])"


@lru_cache(maxsize=4096)
def _character_pattern(character: str) -> bytes:
    """Every way one character of a secret can appear in a report, as a regex alternation."""
    alternatives = sorted((re.escape(form) for form in _character_forms(character)),
                          key=lambda alternative: (-len(alternative), alternative))
    return b"(?:" + b"|".join(alternatives) + b")"


@lru_cache(maxsize=4096)
def _character_forms(character: str) -> frozenset[bytes]:
    """Every way one character of a secret can appear in a report, as bytes."""
    forms = _single_encodings(character)
    forms |= {encode(form) for form in list(forms) for encode in _WHOLE_STRING_ENCODERS}
    if _XML_INVALID.match(character):
        forms.add("")  # the junit reporter drops characters XML 1.0 cannot carry
    return frozenset(form.encode("utf-8", "surrogatepass") for form in forms)


def _single_encodings(character: str) -> set[str]:
    """The character as is and as each encoder a reporter, an HTTP library or ``repr`` writes it."""
    code = ord(character)
    utf8 = character.encode("utf-8", "surrogatepass")
    forms = {character, json.dumps(character)[1:-1], json.dumps(character, ensure_ascii=False)[1:-1],
             html.escape(character, quote=True), html.escape(character, quote=False),
             f"&#{code};", f"&#{code:02d};", f"&#x{code:x};", f"&#x{code:X};", f"&#X{code:X};",
             "".join(f"%{byte:02X}" for byte in utf8), "".join(f"%{byte:02x}" for byte in utf8),
             quote_plus(character, safe=""), _json_unicode_escape(character, str.lower),
             _json_unicode_escape(character, str.upper), repr(character)[1:-1], ascii(character)[1:-1]}
    forms |= {_NAMED_ENTITIES.get(character, character), _JSON_SHORT.get(character, character)}
    if character == "'":
        forms.add("\\'")  # repr() of a string holding both kinds of quote, in exception messages
    if character == '"':
        forms.add('""')  # CSV doubles quotes inside a quoted field
    return forms


def _json_unicode_escape(character: str, case) -> str:
    """``\\u00e9``; a character outside the BMP as its surrogate pair, like json and orjson write it."""
    units = character.encode("utf-16-be", "surrogatepass")
    return "".join("\\u" + case(units[i:i + 2].hex()) for i in range(0, len(units), 2))


def _csv_quote(text: str) -> str:
    return text.replace('"', '""')


_NAMED_ENTITIES = {'"': "&quot;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;"}
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t"}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: Second layer: an encoded character encoded once more (JSON inside HTML, a URL in a JSON string...).
_WHOLE_STRING_ENCODERS = (
    lambda text: json.dumps(text)[1:-1],
    lambda text: html.escape(text, quote=True),
    lambda text: html.escape(text, quote=False),
    _csv_quote,
    lambda text: quote(text, safe=""),
    lambda text: quote(text),
    lambda text: quote_plus(text),
)

