"""The server's users: names, scrypt-hashed passwords and a read-only flag, in DIR/users.json.

A fresh directory has TDengine's default user ``root`` / ``taosdata``; change it with
``ALTER USER root PASS '...'``. Passwords are never stored or logged in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from septet.common.atomic import atomic_write_json
from septet.tsdb.catalog import check_identifier
from septet.tsdb.errors import TsdbError

USERS_FILE = "users.json"
DEFAULT_USER, DEFAULT_PASSWORD = "root", "taosdata"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB, ~30 ms per check: slow for a guesser


class AuthError(TsdbError):
    """Missing or wrong credentials (HTTP 401)."""


class PermissionDenied(TsdbError):
    """An authenticated user may not run this (HTTP 403)."""


@dataclass
class User:
    name: str
    salt: str  # hex
    hash: str  # hex scrypt(password, salt)
    read_only: bool = False
    superuser: bool = False


def _hash(password: str, salt: bytes) -> str:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT).hex()


class Users:
    """The user table; thread-safe; persisted atomically when ``path`` is given."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        self.path = None if directory is None else Path(directory) / USERS_FILE
        self.lock = threading.Lock()
        self.users: dict[str, User] = {}
        # Successful checks are cached by (name, password digest) so that each request does not
        # pay scrypt; the cache is cleared whenever a password changes.
        self._verified: set[tuple[str, bytes]] = set()
        if self.path is not None and self.path.exists():
            import json

            for d in json.loads(self.path.read_text())["users"]:
                self.users[d["name"]] = User(**d)
        if not self.users:
            self.users[DEFAULT_USER] = self._make(DEFAULT_USER, DEFAULT_PASSWORD, False, True)
            self._save()

    @staticmethod
    def _make(name: str, password: str, read_only: bool, superuser: bool = False) -> User:
        if not password:
            raise TsdbError("a password must not be empty")
        salt = os.urandom(16)
        return User(name, salt.hex(), _hash(password, salt), read_only, superuser)

    def _save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"users": [asdict(u) for u in self.users.values()]})

    def authenticate(self, name: str, password: str) -> User:
        """The user if the password matches; AuthError otherwise (same message either way)."""
        key = (name, hashlib.sha256(password.encode("utf-8")).digest())
        with self.lock:
            user = self.users.get(name)
            if user is not None and key in self._verified:
                return user
        ok = user is not None and hmac.compare_digest(
            _hash(password, bytes.fromhex(user.salt)), user.hash
        )
        if not ok:
            raise AuthError("authentication failure: wrong user name or password")
        with self.lock:
            self._verified.add(key)
        return user

    def create(self, name: str, password: str, read_only: bool = False) -> None:
        name = check_identifier(name, "user")
        with self.lock:
            if name in self.users:
                raise TsdbError(f"user {name!r} already exists")
            self.users[name] = self._make(name, password, read_only)
            self._save()

    def drop(self, name: str) -> None:
        with self.lock:
            user = self._get(name)
            if user.superuser:
                raise TsdbError(f"user {name!r} is the superuser and cannot be dropped")
            del self.users[name]
            self._verified = {k for k in self._verified if k[0] != name}
            self._save()

    def set_password(self, name: str, password: str) -> None:
        with self.lock:
            user = self._get(name)
            new = self._make(name, password, user.read_only, user.superuser)
            self.users[name] = new
            self._verified = {k for k in self._verified if k[0] != name}
            self._save()

    def set_read_only(self, name: str, read_only: bool) -> None:
        with self.lock:
            user = self._get(name)
            if user.superuser and read_only:
                raise TsdbError(f"user {name!r} is the superuser and keeps every privilege")
            user.read_only = read_only
            self._save()

    def _get(self, name: str) -> User:
        user = self.users.get(name.lower())
        if user is None:
            raise TsdbError(f"user {name!r} does not exist (SHOW USERS lists them)")
        return user
