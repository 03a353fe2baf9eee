"""A small shop API on the built-in target, for multi-step flows ("log in, use the token").

The contract (documented in the README, so any server can implement it and be
used with ``--target``):

==================  =========================================================
route               answer
==================  =========================================================
``POST /login``     body ``{"user": U, "password": P}``: 200 ``{"token": T}``
                    and ``Set-Cookie: sid=...; Path=/; HttpOnly`` when P is
                    ``"pw-" + U``; 401 otherwise; 400 for a body that is not
                    such a JSON object
``GET /items``      ``Authorization: Bearer T``: 200 ``{"items": [{"id": N,
                    "name": ...}, ...]}``, the items of T's user
                    (:func:`item_ids`); 401 without a valid token
``POST /cart``      bearer and ``{"item": N}`` (N an integer or a string of
                    digits): 201 ``{"cart": [...]}`` when N is one of the
                    user's items, 409 when it is not, 401 without a token
``GET /cart``       bearer: 200 ``{"cart": [...]}``
``GET /whoami``     the ``sid`` cookie from the login (or the bearer): 200
                    ``{"user": U}``; 401 without either
==================  =========================================================

Every answer is ``application/json``; errors are ``{"error": "..."}``. Other
methods on these paths get 405 with ``Allow``.

Nothing here touches the network: :meth:`Shop.handle` maps (method, path,
headers, body) to (status, JSON body, extra header bytes), and the server
writes the answer like any other. Tokens and session cookies are the user
name plus an HMAC under a per-process random key, so no token table is kept
and a restarted server rejects old tokens. Carts are the only state, bounded
in both directions: at most :data:`MAX_CARTS` carts (the least recently used
one is dropped) of at most :data:`MAX_CART_LENGTH` items (the oldest item is
dropped), so a long load test never fills memory or starts failing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections import OrderedDict

__all__ = [
    "ITEMS_PER_USER",
    "MAX_BODY_BYTES",
    "MAX_CARTS",
    "MAX_CART_LENGTH",
    "MAX_USER_LENGTH",
    "SHOP_PATHS",
    "Shop",
    "item_ids",
    "item_name",
    "password_for",
]

#: Exact paths the shop answers; every other path keeps the target's ordinary behaviour.
SHOP_PATHS = frozenset({b"/login", b"/items", b"/cart", b"/whoami"})
#: What the server's hot path checks with one ``startswith`` (a superset of SHOP_PATHS).
SHOP_PREFIXES = tuple(sorted(SHOP_PATHS))

ITEMS_PER_USER = 5
#: Item ids are within 1..ITEM_ID_LIMIT - 1.
ITEM_ID_LIMIT = 1000
MAX_CART_LENGTH = 64
MAX_CARTS = 10_000
MAX_USER_LENGTH = 256
#: Request bodies of the shop routes above this size are answered 413 (and not kept).
MAX_BODY_BYTES = 64 * 1024
#: Longest numeric string accepted as an item id.
_MAX_ID_DIGITS = 18

_ALLOWED = {
    b"/login": (b"POST",),
    b"/items": (b"GET", b"HEAD"),
    b"/cart": (b"GET", b"HEAD", b"POST"),
    b"/whoami": (b"GET", b"HEAD"),
}
_ALLOW_HEADERS = {path: b"Allow: " + b", ".join(methods) + b"\r\n" for path, methods in _ALLOWED.items()}
_BEARER_CHALLENGE = b"WWW-Authenticate: Bearer\r\n"

_ADJECTIVES = ("red", "small", "wooden", "steel", "blue", "quiet", "round", "plain")
_NOUNS = ("mug", "lamp", "chair", "kettle", "notebook", "clock", "bowl", "scarf")


def password_for(user: str) -> str:
    """The one password the shop accepts for ``user``."""
    return "pw-" + user


def item_ids(user: str) -> tuple[int, ...]:
    """The ids ``GET /items`` lists for ``user``: ITEMS_PER_USER distinct ids from a hash of the name.

    Pure and key-independent, so a test (or a scenario author) can predict them.
    """
    ids: list[int] = []
    counter = 0
    while len(ids) < ITEMS_PER_USER:
        digest = hashlib.sha256(b"items:%d:" % counter + user.encode("utf-8")).digest()
        for offset in range(0, len(digest), 2):
            item = 1 + int.from_bytes(digest[offset:offset + 2], "big") % (ITEM_ID_LIMIT - 1)
            if item not in ids:
                ids.append(item)
                if len(ids) == ITEMS_PER_USER:
                    break
        counter += 1
    return tuple(ids)


def item_name(item: int) -> str:
    return f"{_ADJECTIVES[item % len(_ADJECTIVES)]} {_NOUNS[item // len(_ADJECTIVES) % len(_NOUNS)]} #{item}"


class _Reject(Exception):
    """An answer other than success, raised from deep inside a handler."""

    def __init__(self, status: int, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _json(value) -> bytes:
    return json.dumps(value).encode("utf-8")


def _error(status: int, message: str, extra: bytes = b"") -> tuple[int, bytes, bytes]:
    return status, _json({"error": message}), extra


class Shop:
    """The state of one server's shop: the signing key and the carts."""

    __slots__ = ("_key", "_carts", "_items_cache")

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)
        # user -> list of item ids, least recently used first.
        self._carts: OrderedDict[str, list[int]] = OrderedDict()
        # user -> (ids, JSON body of GET /items); as bounded as the carts.
        self._items_cache: OrderedDict[str, tuple[frozenset[int], bytes]] = OrderedDict()

    # -- credentials ----------------------------------------------------------

    def _sign(self, purpose: bytes, user: str) -> str:
        name = base64.urlsafe_b64encode(user.encode("utf-8")).rstrip(b"=")
        mac = hmac.new(self._key, purpose + b"\0" + name, hashlib.sha256).digest()
        return (name + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode("ascii")

    def _verify(self, purpose: bytes, credential: bytes) -> str | None:
        name, dot, mac = credential.strip().rpartition(b".")
        if not dot or not name:
            return None
        try:
            given = base64.urlsafe_b64decode(mac + b"=" * (-len(mac) % 4))
            user = base64.urlsafe_b64decode(name + b"=" * (-len(name) % 4)).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        expected = hmac.new(self._key, purpose + b"\0" + name, hashlib.sha256).digest()
        return user if hmac.compare_digest(given, expected) else None

    def token(self, user: str) -> str:
        """The bearer token of ``user`` (the same for every login within this process)."""
        return self._sign(b"token", user)

    def session(self, user: str) -> str:
        """The ``sid`` cookie value of ``user``; not usable as a token, nor the other way round."""
        return self._sign(b"sid", user)

    def _bearer_user(self, headers: dict) -> str | None:
        value = _header(headers, b"authorization")
        if value is None:
            return None
        scheme, _, credential = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        return self._verify(b"token", credential)

    def _cookie_user(self, headers: dict) -> str | None:
        value = _header(headers, b"cookie")
        if value is None:
            return None
        for pair in value.split(b";"):
            name, eq, credential = pair.strip().partition(b"=")
            if eq and name == b"sid":
                user = self._verify(b"sid", credential.strip(b'"'))
                if user is not None:
                    return user
        return None

    def _require_bearer(self, headers: dict) -> str:
        user = self._bearer_user(headers)
        if user is None:
            raise _Reject(401, "a valid 'Authorization: Bearer <token>' header is required", _BEARER_CHALLENGE)
        return user

    # -- items and carts ----------------------------------------------------

    def _items(self, user: str) -> tuple[frozenset[int], bytes]:
        cache = self._items_cache
        entry = cache.get(user)
        if entry is None:
            ids = item_ids(user)
            entry = (frozenset(ids), _json({"items": [{"id": item, "name": item_name(item)} for item in ids]}))
            cache[user] = entry
            if len(cache) > MAX_CARTS:
                cache.popitem(last=False)
        else:
            cache.move_to_end(user)
        return entry

    def cart(self, user: str) -> list[int]:
        return list(self._carts.get(user, ()))

    def _add_to_cart(self, user: str, item: int) -> list[int]:
        carts = self._carts
        cart = carts.get(user)
        if cart is None:
            cart = carts[user] = []
            if len(carts) > MAX_CARTS:
                carts.popitem(last=False)
        else:
            carts.move_to_end(user)
        cart.append(item)
        if len(cart) > MAX_CART_LENGTH:
            del cart[0]
        return cart

    # -- requests -----------------------------------------------------------

    def handle(self, method: bytes, path: bytes, headers: dict, body: bytes | None) -> tuple[int, bytes, bytes]:
        """Answer one request to a path of SHOP_PATHS: (status, JSON body, extra header lines).

        ``headers`` maps header names (any case) to values, as bytes;
        ``body`` is None when the request body was larger than MAX_BODY_BYTES.
        """
        allowed = _ALLOWED[path]
        if method not in allowed:
            return _error(405, f"{path.decode()} accepts {', '.join(m.decode() for m in allowed)}",
                          _ALLOW_HEADERS[path])
        if body is None:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        try:
            if path == b"/login":
                return self._login(body)
            if path == b"/whoami":
                user = self._cookie_user(headers) or self._bearer_user(headers)
                if user is None:
                    raise _Reject(401, "log in first: no valid sid cookie or bearer token", _BEARER_CHALLENGE)
                return 200, _json({"user": user}), b""
            user = self._require_bearer(headers)
            if path == b"/items":
                return 200, self._items(user)[1], b""
            # /cart
            if method == b"POST":
                item = _item_of(_json_object(body))
                if item not in self._items(user)[0]:
                    raise _Reject(409, f"item {item} is not one of this user's items (GET /items)")
                return 201, _json({"cart": self._add_to_cart(user, item)}), b""
            return 200, _json({"cart": self.cart(user)}), b""
        except _Reject as reject:
            return _error(reject.status, str(reject), reject.extra)

    def _login(self, body: bytes) -> tuple[int, bytes, bytes]:
        document = _json_object(body)
        user = document.get("user")
        password = document.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise _Reject(400, 'expected {"user": "<name>", "password": "<password>"} with string values')
        if not 1 <= len(user) <= MAX_USER_LENGTH:
            raise _Reject(400, f"user must have 1..{MAX_USER_LENGTH} characters")
        if not hmac.compare_digest(password.encode("utf-8"), password_for(user).encode("utf-8")):
            return _error(401, "wrong user or password")
        cookie = b"Set-Cookie: sid=" + self.session(user).encode("ascii") + b"; Path=/; HttpOnly\r\n"
        return 200, _json({"token": self.token(user)}), cookie


def _header(headers: dict, wanted: bytes) -> bytes | None:
    """The value of header ``wanted`` (lower case), whatever case the client used."""
    value = headers.get(wanted)
    if value is not None:
        return value
    for name, value in headers.items():
        if name.lower() == wanted:
            return value
    return None


def _json_object(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Reject(400, "the request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise _Reject(400, "the request body must be a JSON object")
    return document


def _item_of(document: dict) -> int:
    item = document.get("item")
    # bool is an int in Python, but true is not an item id.
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, str):
        digits = item.strip()
        if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_ID_DIGITS:
            return int(digits)
    raise _Reject(400, 'expected {"item": <id>} with an integer id (or a string of digits)')
