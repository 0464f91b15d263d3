"""Logins for the web app: a users file of salted password hashes and roles, read by `workbench serve --auth FILE`
and written by `workbench add-user`.

Roles: a `rater` uses the arena and sees their own ratings; an `admin` also trains, indexes, evaluates, reads the
report, exports and sees every rater's ratings. Passwords are hashed with scrypt (the standard library's
`hashlib.scrypt`, a memory-hard key derivation made for this) and a random salt per user, and compared in constant
time; the file is written atomically with mode 0600. Format (JSON):
`{"users": {"NAME": {"role": "rater", "password": "scrypt$N$r$p$SALT_HEX$HASH_HEX"}}}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from workbench.data.loaders import BadInputError
from workbench.limits import JSONInputError, parse_json
from workbench.workspace import write_text_atomic

ROLES = ("rater", "admin")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost: about 16 MiB and a few tens of milliseconds per login on a laptop core."""
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(found.hex(), digest)


@dataclass
class Users:
    """The logins of a users file: `{name: {"role", "password"}}`."""

    path: Path
    entries: dict[str, dict]

    @classmethod
    def load(cls, path: str | Path) -> Users:
        """Read and check a users file; a missing, unreadable or malformed one is a `BadInputError` that says how
        to make it."""
        path = Path(path)
        make = f"add logins with `workbench add-user --auth {path} --user NAME --role rater|admin`"
        try:
            data = parse_json(path.read_bytes())
        except FileNotFoundError:
            raise BadInputError(f"{path}: no such users file; {make}") from None
        except (OSError, JSONInputError) as exc:
            raise BadInputError(f"{path}: cannot read the users file ({exc}); {make}") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict) or not users:
            raise BadInputError(f"{path}: no users in the file; {make}")
        for name, entry in users.items():
            if (
                not isinstance(entry, dict)
                or entry.get("role") not in ROLES
                or not isinstance(entry.get("password"), str)
            ):
                raise BadInputError(
                    f"{path}: user {name!r} needs a role ({' or '.join(ROLES)}) and a password hash; {make}"
                )
        return cls(path, users)

    def check(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s (Gradio's `auth` callback). An unknown name costs a hash too, so the
        answer's timing does not tell which names exist."""
        entry = self.entries.get(name)
        stored = entry["password"] if entry else hash_password("")
        return password_matches(password, stored) and entry is not None

    def role(self, name: str | None) -> str | None:
        entry = self.entries.get(name or "")
        return entry["role"] if entry else None


def add_user(path: str | Path, name: str, role: str, password: str) -> bool:
    """Add `name` (or replace their password and role) in the users file at `path`, made if missing; returns whether
    the user is new."""
    if role not in ROLES:
        raise BadInputError(f"--role: {role!r} is not a role; choose {' or '.join(ROLES)}")
    if not name or not name.isprintable() or ":" in name:
        raise BadInputError("--user: a login name must be printable text without ':'")
    if len(password) < MIN_PASSWORD:
        raise BadInputError(f"the password must have at least {MIN_PASSWORD} characters")
    path = Path(path)
    users = Users.load(path).entries if path.exists() else {}
    new = name not in users
    users[name] = {"role": role, "password": hash_password(password)}
    write_text_atomic(path, json.dumps({"users": users}, indent=2) + "\n", private=True)
    return new
