"""bicycle.py: `service create --secret`, one_line, and the --api check.
No master: the client's call is replaced by a recorder."""
import os
import sys

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import bicycle  # noqa: E402
from cli import client as client_module  # noqa: E402

SERVICE = {"name": "x", "version": 1, "status": "running", "replicas": {"running": 1, "desired": 1}}
SECRET = "hunter2-Zq7!"


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Record Client.call; no inventory (a path that does not exist), a token from the environment."""
    recorded = []

    def call(self, method, path, body=None, params=None, ok=(200, 201, 202)):
        recorded.append({"method": method, "path": path, "body": body, "params": params,
                         "base": self.base, "token": self.session.token})
        return 201, dict(SERVICE)

    monkeypatch.setattr(client_module.Client, "call", call)
    monkeypatch.setenv("BICYCLE_TOKEN", "tok")
    monkeypatch.delenv("BICYCLE_API", raising=False)
    monkeypatch.setenv("BICYCLE_INVENTORY", str(tmp_path / "no-inventory.yml"))
    return recorded


def run(*args):
    result = CliRunner().invoke(bicycle.main, list(args), catch_exceptions=False)
    return result


def create(*extra, api="127.0.0.1:1"):
    return run("--api", api, "service", "create", "x", "--image", "img:1", *extra)


def one_error_line(result):
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bicycle: ")
    return lines[0]


# -- --secret -----------------------------------------------------------------------------

def test_secret_from_the_environment(calls, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    r = create("--secret", "DB_PASSWORD")
    assert r.exit_code == 0, r.output
    assert len(calls) == 1
    c = calls[0]
    assert (c["method"], c["path"]) == ("POST", "/service")
    assert c["body"]["secrets"] == {"DB_PASSWORD": SECRET}
    assert c["params"] == {"wait": "true"}
    assert c["base"] == "http://127.0.0.1:1" and c["token"] == "tok"
    assert SECRET not in r.output
    assert "service x v1: running, 1/1 running" in r.stdout


def test_secret_from_a_file_drops_the_trailing_newline(calls, tmp_path):
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    r = create("--secret", f"DB_PASSWORD=@{f}", "-s", f"OTHER=@{f}")
    assert r.exit_code == 0, r.output
    assert calls[0]["body"]["secrets"] == {"DB_PASSWORD": SECRET, "OTHER": SECRET}


def test_secret_file_without_newline_and_with_inner_newlines(calls, tmp_path):
    (tmp_path / "a").write_text("abc")
    (tmp_path / "b").write_text("line1\nline2\n")
    r = create("--secret", f"A=@{tmp_path / 'a'}", "--secret", f"B=@{tmp_path / 'b'}")
    assert r.exit_code == 0, r.output
    assert calls[0]["body"]["secrets"] == {"A": "abc", "B": "line1\nline2"}


def test_environment_and_file_secrets_together(calls, monkeypatch, tmp_path):
    monkeypatch.setenv("TOKEN", "from-env")
    (tmp_path / "k").write_text("from-file\n")
    r = create("-s", "TOKEN", "-s", f"KEY=@{tmp_path / 'k'}", "--no-wait")
    assert r.exit_code == 0, r.output
    assert calls[0]["body"]["secrets"] == {"TOKEN": "from-env", "KEY": "from-file"}
    assert calls[0]["params"] == {"wait": "false"}


def test_no_secret_sends_an_empty_map(calls):
    r = create()
    assert r.exit_code == 0, r.output
    assert calls[0]["body"]["secrets"] == {}


@pytest.mark.parametrize("value", [SECRET, "s3cr3t with spaces", "x=y", "plain"])
def test_a_value_on_the_command_line_is_refused_without_echoing_it(calls, value):
    r = create("--secret", f"DB_PASSWORD={value}")
    line = one_error_line(r)
    assert "DB_PASSWORD" in line
    assert value not in r.output
    assert value not in r.stderr
    assert calls == []                              # nothing was sent


def test_a_nameless_value_is_refused_without_echoing_it(calls):
    r = create("--secret", f"={SECRET}")
    one_error_line(r)
    assert SECRET not in r.stderr
    assert calls == []


def test_an_unset_environment_variable_is_refused(calls, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    r = create("--secret", "NOT_SET_ANYWHERE")
    line = one_error_line(r)
    assert "NOT_SET_ANYWHERE" in line
    assert calls == []


def test_an_unreadable_file_is_refused(calls, tmp_path):
    r = create("--secret", f"A=@{tmp_path / 'missing'}")
    line = one_error_line(r)
    assert "cannot read" in line and "missing" in line
    assert calls == []


def test_update_takes_secrets_the_same_way(calls, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    r = run("--api", "127.0.0.1:1", "service", "update", "x", "--secret", "DB_PASSWORD")
    assert r.exit_code == 0, r.output
    assert calls[0]["method"] == "PATCH" and calls[0]["path"] == "/service/x"
    assert calls[0]["body"] == {"secrets": {"DB_PASSWORD": SECRET}}
    r = run("--api", "127.0.0.1:1", "service", "update", "x", "--secret", f"DB_PASSWORD={SECRET}")
    one_error_line(r)
    assert SECRET not in r.stderr
    assert len(calls) == 1


# -- one_line ------------------------------------------------------------------------------

CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f"]


@pytest.mark.parametrize("ch,shown", [("\n", "\\n"), ("\x1b", "\\x1b"), ("\t", "\\t"), ("\x00", "\\x00"),
                                      ("\x7f", "\\x7f"), ("\r", "\\r")])
def test_one_line_escapes_control_characters(ch, shown):
    assert bicycle.one_line(f"a{ch}b") == f"a{shown}b"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_one_line_leaves_no_control_character(text):
    out = bicycle.one_line(text)
    assert not any(ord(c) < 0x20 or c == "\x7f" for c in out)
    assert "\n" not in out and "\r" not in out


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_one_line_keeps_printable_text(text):
    assert bicycle.one_line(text) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))) | st.sampled_from(CONTROLS)))
def test_one_line_changes_only_the_control_characters(parts):
    text = "".join(parts)
    expected = "".join(repr(p)[1:-1] if p in CONTROLS else p for p in parts)
    assert bicycle.one_line(text) == expected


def test_a_failure_message_is_printed_on_one_line(calls):
    r = create("--secret", "A\nB\x1b[31m=@/nonexistent\n")
    line = one_error_line(r)
    assert "\x1b" not in r.stderr and "A\\nB\\x1b[31m" in line


# -- --api ---------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["$(touch x)", "a b:1", "host", "http://host", "ftp://host:1", "host:1/path",
                                 "host:123456", "user@host:22", "host:1\n", ":80", "http://a b:1"])
def test_a_bad_api_address_is_refused_in_one_line(calls, api):
    r = create(api=api)
    line = one_error_line(r)
    assert "HOST:PORT" in line
    assert calls == []


@pytest.mark.parametrize("api,base", [("127.0.0.1:1", "http://127.0.0.1:1"),
                                      ("master-1.example.org:7070", "http://master-1.example.org:7070"),
                                      ("http://10.0.0.1:7070", "http://10.0.0.1:7070"),
                                      ("https://m.example:443", "https://m.example:443"),
                                      ("[::1]:7070", "http://[::1]:7070")])
def test_a_good_api_address_passes(calls, api, base):
    r = create(api=api)
    assert r.exit_code == 0, r.output
    assert [c["base"] for c in calls] == [base]


def test_the_api_address_from_the_environment_is_checked_too(calls, monkeypatch):
    monkeypatch.setenv("BICYCLE_API", "bad address")
    r = run("service", "ls")
    one_error_line(r)
    assert calls == []
