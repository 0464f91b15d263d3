import io
import json
import stat

import pytest

from workbench.auth import Users, add_user, hash_password, password_matches
from workbench.cli import _warn_if_exposed, main
from workbench.data.loaders import BadInputError


def test_passwords_are_salted_scrypt_hashes_checked_in_constant_time():
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert stored != hash_password("correct horse")  # a fresh salt each time
    assert password_matches("correct horse", stored) and not password_matches("correct hors", stored)
    assert not password_matches("x", "plain-text") and not password_matches("x", "md5$1$2$3$ab$cd")


def test_a_users_file_is_written_private_and_read_back_with_roles(tmp_path):
    path = tmp_path / "users.json"
    assert add_user(path, "rita", "rater", "rita-pass-1") and add_user(path, "ada", "admin", "ada-pass-12")
    assert not add_user(path, "rita", "admin", "rita-pass-2")  # an update: new role and password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = Users.load(path)
    assert users.role("rita") == "admin" and users.role("nobody") is None and users.role(None) is None
    assert users.check("rita", "rita-pass-2") and not users.check("rita", "rita-pass-1")
    assert not users.check("nobody", "rita-pass-2")
    assert "rita-pass" not in path.read_text()


@pytest.mark.parametrize(
    "content, why",
    [
        (None, "no such users file"),
        ("{not json", "cannot read the users file"),
        ('{"users": {}}', "no users in the file"),
        ('{"users": {"x": {"role": "owner", "password": "h"}}}', "needs a role"),
        ("[" * 5000, "cannot read the users file"),
    ],
)
def test_a_bad_users_file_says_how_to_make_one(tmp_path, content, why):
    path = tmp_path / "users.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInputError, match=why) as caught:
        Users.load(path)
    assert "workbench add-user" in str(caught.value)


def test_add_user_refuses_short_passwords_unknown_roles_and_odd_names(tmp_path):
    path = tmp_path / "users.json"
    for name, role, password, why in (
        ("rita", "rater", "short", "at least 8"),
        ("rita", "owner", "long-enough", "not a role"),
        ("ri:ta", "rater", "long-enough", "without ':'"),
    ):
        with pytest.raises(BadInputError, match=why):
            add_user(path, name, role, password)
    assert not path.exists()


def test_cli_adds_users_from_stdin_and_serve_refuses_a_bad_users_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("rater-pass-1\n"))
    assert main(["add-user", "--auth", str(path), "--user", "rita", "--role", "rater"]) == 0
    assert "added rater rita" in capsys.readouterr().out
    assert json.loads(path.read_text())["users"]["rita"]["role"] == "rater"
    assert main(["serve", "--auth", str(tmp_path / "missing.json"), "--home", str(tmp_path)]) == 2
    assert "no such users file" in capsys.readouterr().err


def test_a_server_without_logins_beyond_loopback_warns(capsys):
    for host in ("127.0.0.1", "localhost", "::1"):
        _warn_if_exposed(host, "use it", "add logins")
    assert capsys.readouterr().err == ""
    for host in ("0.0.0.0", "192.168.1.5", "myhost.example"):
        _warn_if_exposed(host, "use it", "add logins")
        assert "WARNING" in capsys.readouterr().err
