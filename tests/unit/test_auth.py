"""master.auth: the token file and the rules of who may call what."""
import os
import stat
import threading

import pytest
from hypothesis import given, strategies as st

from master import auth


def test_the_token_file_is_created_once_with_mode_0600(tmp_path):
    path = str(tmp_path / "deep" / "tokens.json")
    first = auth.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first[auth.ADMIN] != first[auth.READ]
    assert auth.load_or_create(path) == first
    assert [f for f in os.listdir(tmp_path / "deep")] == ["tokens.json"]    # no temporary file left


def test_masters_starting_together_share_one_token_file(tmp_path):
    path = str(tmp_path / "tokens.json")
    seen, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        seen.append(auth.load_or_create(path))
    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(s == seen[0] for s in seen)


@pytest.mark.parametrize("text", ["", "[]", '{"admin": "short", "read": "also-too-short"}', '{"admin": 1}'])
def test_a_bad_token_file_is_one_clear_error(tmp_path, text):
    path = tmp_path / "tokens.json"
    path.write_text(text)
    with pytest.raises(auth.TokenFileError) as e:
        auth.load_or_create(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_rules():
    assert auth.required("GET", "/health") is None
    assert auth.required("GET", "/state") == auth.READ
    assert auth.required("HEAD", "/metrics") == auth.READ
    assert auth.required("POST", "/service") == auth.ADMIN
    assert auth.required("DELETE", "/health") is None
    assert auth.allows(auth.ADMIN, auth.READ) and auth.allows(auth.READ, auth.READ)
    assert not auth.allows(auth.READ, auth.ADMIN) and not auth.allows(None, auth.READ)
    assert auth.allows(None, None)


TOKENS = {auth.ADMIN: "bicycle-admin-abcdefghijklmnop", auth.READ: "bicycle-read-abcdefghijklmnop"}


def test_presented_tokens():
    assert auth.presented("Bearer abc") == "abc"
    assert auth.presented("bearer   abc ") == "abc"
    assert auth.presented("Basic dTpzZWNyZXQ=") == "secret"      # u:secret
    assert auth.presented("Basic dTo=") is None                   # empty password
    assert auth.presented("Basic !!!") is None
    assert auth.presented("Token abc") is None
    assert auth.presented("") is None and auth.presented(None) is None


@given(st.text(max_size=80))
def test_only_the_exact_tokens_have_a_kind(text):
    kind = auth.kind_of(text, TOKENS)
    assert kind == {v: k for k, v in TOKENS.items()}.get(text)
    assert auth.kind_of(auth.presented(f"Bearer {TOKENS[auth.READ]}"), TOKENS) == auth.READ
