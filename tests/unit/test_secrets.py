"""Services' secrets: the vault (master.vault), the key file (files.create_private),
the spec field (model.ServiceSpec.secrets), API validation (master.validate) and the
docker run command line (remote.commands.run)."""
import hashlib
import json
import os
import shlex
import stat
import threading

import pytest
from cryptography.fernet import Fernet
from hypothesis import assume, given, settings, strategies as st

import model
from master.validate import ENV_KEY, Invalid, MAX_STRING, service_body
from master.vault import Vault, VaultError
from model import Port, ServiceSpec
from remote import commands
from files import create_private

NODES = 3
VAULT = Vault(Fernet.generate_key())          # module-level: hypothesis and function fixtures do not mix
OTHER = Vault(Fernet.generate_key())

# Text that can be encoded to UTF-8 (no lone surrogates).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
SECRET_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
ONE_LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"),
                   max_size=50)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def fake_seal(name, value):
    return "sealed:" + value[::-1]


class Recorder:
    """A seal function that records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, value):
        self.calls.append((name, value))
        return fake_seal(name, value)


def never_seal(name, value):
    raise AssertionError(f"seal called with ({name!r}, {value!r})")


def good(**changes):
    body = {"name": "web", "image": "nginx:1.25", "replicas": 3}
    body.update(changes)
    return body


def base_of(spec, replicas=2):
    """The base the API passes for a patch."""
    return {"spec": spec.to_dict(), "replicas": replicas}


def invalid_fields(body, base=None, seal=never_seal):
    with pytest.raises(Invalid) as e:
        service_body(body, NODES, base=base, seal=seal)
    assert all(set(err) == {"field", "message"} and err["message"] for err in e.value.errors)
    return [err["field"] for err in e.value.errors]


# ---------------------------------------------------------------- master/vault.py

def test_open_or_create_makes_a_private_key_file_once(tmp_path):
    path = str(tmp_path / "keys" / "secrets.key")
    first = Vault.open_or_create(path)
    assert os.path.isfile(path)
    assert mode(path) == 0o600
    with open(path, "rb") as f:
        key = f.read()
    second = Vault.open_or_create(path)
    with open(path, "rb") as f:
        assert f.read() == key                       # not replaced by the second call
    assert mode(path) == 0o600
    sealed = first.seal("hunter2")
    assert second.unseal(sealed) == "hunter2"
    assert first.unseal(second.seal("s3cret")) == "s3cret"


def test_open_or_create_makes_different_keys_for_different_files(tmp_path):
    a = Vault.open_or_create(str(tmp_path / "a.key"))
    b = Vault.open_or_create(str(tmp_path / "b.key"))
    with pytest.raises(VaultError):
        b.unseal(a.seal("x"))


def test_open_or_create_uses_an_existing_key(tmp_path):
    key = Fernet.generate_key()
    path = tmp_path / "secrets.key"
    path.write_bytes(key + b"\n")
    vault = Vault.open_or_create(str(path))
    assert Fernet(key).decrypt(vault.seal("abc").encode()) == b"abc"
    assert path.read_bytes() == key + b"\n"


@pytest.mark.parametrize("content", [
    b"not a key\n",
    b"",
    b"\n",
    b"\xff\xfe\x00garbage",
    b"dLACbrwxleM1sgG8Ecaf4F_Yc8IUVAiE7ACDIt98\n",   # a Fernet key cut short (fixed: parallel runs collect the same ids)
    b"x" * 32 + b"\n",                               # raw bytes, not base64
])
def test_a_corrupt_key_file_raises_vault_error_naming_the_file(tmp_path, content):
    path = tmp_path / "secrets.key"
    path.write_bytes(content)
    with pytest.raises(VaultError) as e:
        Vault.open_or_create(str(path))
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message and message.strip() == message
    assert path.read_bytes() == content              # a corrupt key is never replaced


def test_an_unreadable_key_path_raises_vault_error_naming_the_file(tmp_path):
    path = tmp_path / "secrets.key"
    path.mkdir()                                     # exists, but is a folder
    with pytest.raises(VaultError) as e:
        Vault.open_or_create(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_an_invalid_key_raises_vault_error():
    with pytest.raises(VaultError):
        Vault(b"short")


@given(value=TEXT)
def test_seal_unseal_round_trip(value):
    sealed = VAULT.seal(value)
    assert isinstance(sealed, str)
    assert VAULT.unseal(sealed) == value


@settings(max_examples=200)
@given(value=st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4),
                       st.text(alphabet=B64URL, min_size=8, max_size=40)))
def test_sealed_text_never_contains_the_plain_value(value):
    sealed = VAULT.seal(value)
    # A Fernet token starts with a fixed version byte and the top (zero) bytes of a
    # big-endian timestamp, "gAAAAAB.": values such as "AAAA" appear there while
    # revealing nothing. Everything after it is ciphertext and MAC.
    assume(value not in sealed[:8])
    assert value not in sealed


def test_sealing_twice_gives_different_tokens():
    # Fernet uses a random IV: what reseal() relies on to keep digests stable.
    assert VAULT.seal("same") != VAULT.seal("same")


def test_unseal_with_another_key_raises_vault_error():
    sealed = OTHER.seal("hunter2")
    with pytest.raises(VaultError) as e:
        VAULT.unseal(sealed)
    assert "hunter2" not in str(e.value)


@pytest.mark.parametrize("sealed", ["", "not-a-token", "gAAAAA", "é-not-ascii"])
def test_unseal_of_garbage_raises_vault_error(sealed):
    with pytest.raises(VaultError):
        VAULT.unseal(sealed)


def test_unseal_of_a_tampered_token_raises_vault_error():
    sealed = VAULT.seal("hunter2")
    i = len(sealed) // 2
    tampered = sealed[:i] + ("A" if sealed[i] != "A" else "B") + sealed[i + 1:]
    with pytest.raises(VaultError):
        VAULT.unseal(tampered)


def test_env_file_renders_one_line_per_secret():
    pairs = (("API_KEY", VAULT.seal("k-123")), ("EMPTY", VAULT.seal("")), ("PASS", VAULT.seal("a b=c #d")))
    assert VAULT.env_file(pairs) == "API_KEY=k-123\nEMPTY=\nPASS=a b=c #d\n"


def test_env_file_of_nothing_is_empty():
    assert VAULT.env_file(()) == ""


def test_env_file_refuses_a_value_sealed_with_another_key():
    with pytest.raises(VaultError):
        VAULT.env_file((("A", VAULT.seal("1")), ("B", OTHER.seal("2"))))


@given(secrets=st.dictionaries(SECRET_NAMES, ONE_LINE, max_size=5))
def test_env_file_lines_round_trip(secrets):
    pairs = tuple(sorted((k, VAULT.seal(v)) for k, v in secrets.items()))
    text = VAULT.env_file(pairs)
    assert text.endswith("\n") or not secrets
    lines = text.split("\n")[:-1] if text else []
    parsed = [tuple(line.split("=", 1)) for line in lines]
    assert parsed == sorted(secrets.items())


def test_reseal_keeps_the_sealed_value_when_the_value_is_unchanged():
    current = (("A", VAULT.seal("one")), ("B", VAULT.seal("two")))
    assert VAULT.reseal(current, "A", "one") == current[0][1]
    assert VAULT.reseal(current, "B", "two") == current[1][1]


def test_reseal_gives_a_new_sealed_value_when_the_value_changed():
    current = (("A", VAULT.seal("one")),)
    sealed = VAULT.reseal(current, "A", "uno")
    assert sealed != current[0][1]
    assert VAULT.unseal(sealed) == "uno"


def test_reseal_of_an_unknown_name_seals_afresh():
    current = (("A", VAULT.seal("one")),)
    sealed = VAULT.reseal(current, "B", "one")      # same value, other name
    assert sealed != current[0][1]
    assert VAULT.unseal(sealed) == "one"
    fresh = VAULT.reseal((), "A", "one")
    assert VAULT.unseal(fresh) == "one"


def test_reseal_replaces_a_value_it_cannot_unseal():
    current = (("A", OTHER.seal("one")),)
    sealed = VAULT.reseal(current, "A", "one")
    assert sealed != current[0][1]
    assert VAULT.unseal(sealed) == "one"


@given(old=ONE_LINE, new=ONE_LINE)
def test_reseal_property(old, new):
    current = (("S", VAULT.seal(old)),)
    sealed = VAULT.reseal(current, "S", new)
    assert VAULT.unseal(sealed) == new
    assert (sealed == current[0][1]) == (old == new)


# ---------------------------------------------------------------- files.py create_private

def test_create_private_creates_once_with_mode_0600(tmp_path):
    path = str(tmp_path / "token")
    assert create_private(path, "first\n") is True
    assert mode(path) == 0o600
    assert create_private(path, "second\n") is False
    with open(path, encoding="utf-8") as f:
        assert f.read() == "first\n"
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["token"]


def test_create_private_never_overwrites_an_existing_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("mine")
    os.chmod(path, 0o644)
    assert create_private(str(path), "theirs") is False
    assert path.read_text() == "mine"
    assert mode(path) == 0o644
    assert os.listdir(tmp_path) == ["token"]


def test_create_private_makes_the_folder_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "a" / "b" / "key"
    assert create_private(str(path), "ünïcode ✓\n") is True
    assert path.read_text(encoding="utf-8") == "ünïcode ✓\n"
    assert os.listdir(tmp_path / "a" / "b") == ["key"]


def test_create_private_with_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert create_private("key", "x") is True
    assert create_private("key", "y") is False
    assert (tmp_path / "key").read_text() == "x"
    assert os.listdir(tmp_path) == ["key"]


def test_create_private_racing_creators_have_one_winner(tmp_path):
    path = str(tmp_path / "key")
    barrier = threading.Barrier(8)
    results = {}

    def create(i):
        barrier.wait()
        results[i] = create_private(path, f"writer {i}\n")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(results) == 8 and len(winners) == 1
    with open(path, encoding="utf-8") as f:
        assert f.read() == f"writer {winners[0]}\n"
    assert os.listdir(tmp_path) == ["key"]


# ---------------------------------------------------------------- model.py ServiceSpec.secrets

def old_digest(d):
    """model.digest's recipe applied to a plain dict."""
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def test_to_dict_omits_empty_secrets():
    assert "secrets" not in ServiceSpec(image="a:1").to_dict()
    assert "secrets" not in ServiceSpec(image="a:1").public_dict()


def test_digest_without_secrets_is_unchanged():
    before = {"image": "a:1", "command": [], "env": {}, "ports": [], "labels": {}, "restart": "always"}
    assert ServiceSpec(image="a:1").digest() == old_digest(before)
    full = ServiceSpec(image="a:1", command=("x",), env=(("A", "1"),), ports=(Port(80, 8080),),
                       labels=(("t", "w"),), restart="never")
    assert full.digest() == old_digest({"image": "a:1", "command": ["x"], "env": {"A": "1"},
                                        "ports": [{"published": 80, "target": 8080, "protocol": "tcp"}],
                                        "labels": {"t": "w"}, "restart": "never"})


def test_secrets_are_in_to_dict_and_the_digest():
    plain = ServiceSpec(image="a:1")
    spec = ServiceSpec(image="a:1", secrets=(("A", "sealed-a"), ("B", "sealed-b")))
    assert spec.to_dict()["secrets"] == {"A": "sealed-a", "B": "sealed-b"}
    assert spec.digest() != plain.digest()
    # a different sealed value is a different spec (why reseal keeps unchanged ones)
    assert spec.digest() != ServiceSpec(image="a:1", secrets=(("A", "sealed-x"), ("B", "sealed-b"))).digest()


def test_public_dict_masks_every_secret():
    spec = ServiceSpec(image="a:1", env=(("E", "visible"),),
                       secrets=(("A", "sealed-a"), ("B", "sealed-b")))
    public = spec.public_dict()
    assert public["secrets"] == {"A": model.SECRET_MASK, "B": model.SECRET_MASK}
    assert public["env"] == {"E": "visible"}
    text = json.dumps(public)
    assert "sealed-a" not in text and "sealed-b" not in text
    assert spec.to_dict()["secrets"] == {"A": "sealed-a", "B": "sealed-b"}    # not changed by masking
    assert {k: v for k, v in public.items() if k != "secrets"} == \
        dict({k: v for k, v in spec.to_dict().items() if k != "secrets"}, pull="missing")


def test_public_dict_without_secrets_is_to_dict_with_the_pull_policy():
    spec = ServiceSpec(image="a:1", env=(("E", "v"),))
    assert spec.public_dict() == dict(spec.to_dict(), pull="missing")
    assert "pull" not in spec.to_dict()        # the default: older specs keep their digest


def test_a_pull_policy_other_than_missing_is_part_of_the_spec():
    never = ServiceSpec(image="a:1", pull="never")
    assert never.digest() != ServiceSpec(image="a:1").digest()
    assert ServiceSpec.from_dict(never.to_dict()) == never


def test_from_dict_of_an_older_dict_has_no_secrets():
    spec = ServiceSpec.from_dict({"image": "a:1", "command": [], "env": {}, "ports": [], "labels": {},
                                  "restart": "always"})
    assert spec == ServiceSpec(image="a:1")
    assert spec.secrets == ()


def pairs(keys, values, max_size=4):
    return st.dictionaries(keys, values, max_size=max_size).map(lambda d: tuple(sorted(d.items())))


SPECS = st.builds(
    ServiceSpec,
    image=st.sampled_from(["a:1", "nginx:1.25", "registry.example.com/x/y@sha256:" + "a" * 64]),
    command=st.lists(TEXT, max_size=3).map(tuple),
    env=pairs(SECRET_NAMES, TEXT),
    ports=st.lists(st.builds(Port, st.integers(1, 65535), st.integers(1, 65535),
                             st.sampled_from(["tcp", "udp"])), max_size=2).map(tuple),
    labels=pairs(st.from_regex(r"[a-z][a-z.]{0,8}", fullmatch=True), TEXT),
    restart=st.sampled_from(model.RESTART_POLICIES),
    secrets=pairs(SECRET_NAMES, st.text(alphabet=B64URL, min_size=1, max_size=20)),
)


@given(spec=SPECS)
def test_from_dict_to_dict_round_trip(spec):
    assert ServiceSpec.from_dict(spec.to_dict()) == spec
    assert ServiceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert ServiceSpec.from_dict(spec.to_dict()).digest() == spec.digest()
    assert ("secrets" in spec.to_dict()) == bool(spec.secrets)


@given(spec=SPECS)
def test_public_dict_never_shows_a_sealed_value(spec):
    public = spec.public_dict()
    assert set(public.get("secrets", {})) == {k for k, _ in spec.secrets}
    assert all(v == model.SECRET_MASK for v in public.get("secrets", {}).values())


# ---------------------------------------------------------------- master/validate.py secrets

def test_create_with_secrets_seals_each_value():
    seal = Recorder()
    name, spec, replicas = service_body(good(secrets={"DB_PASS": "hunter2", "API_KEY": "k-1"}), NODES, seal=seal)
    assert (name, replicas) == ("web", 3)
    assert sorted(seal.calls) == [("API_KEY", "k-1"), ("DB_PASS", "hunter2")]
    assert spec.secrets == (("API_KEY", "sealed:1-k"), ("DB_PASS", "sealed:2retnuh"))
    assert "hunter2" not in json.dumps(spec.to_dict())
    assert spec.env == ()


def test_create_without_secrets_never_seals():
    _, spec, _ = service_body(good(env={"A": "1"}), NODES, seal=never_seal)
    assert spec.secrets == ()
    assert service_body(good(), NODES) == ("web", ServiceSpec(image="nginx:1.25"), 3)


def test_create_with_empty_secrets():
    _, spec, _ = service_body(good(secrets={}), NODES, seal=never_seal)
    assert spec == ServiceSpec(image="nginx:1.25")


@pytest.mark.parametrize("value", ["", " leading and trailing ", "a=b=c", "# not a comment", "$(touch /tmp/x)",
                                   "unicode ✓ \u2028 \x85", "x" * MAX_STRING, "tab\there"])
def test_accepted_secret_values(value):
    _, spec, _ = service_body(good(secrets={"S": value}), NODES, seal=fake_seal)
    assert spec.secrets == (("S", fake_seal("S", value)),)


@pytest.mark.parametrize("key", ["1A", "A-B", "A B", "", "A=B", "é", "a.b", "X" * 129, "A\n"])
def test_secret_names_must_be_env_keys(key):
    assert set(invalid_fields(good(secrets={key: "v"}))) == {f"secrets.{key[:64]}"}


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "trailing\n", "\r\n", "nul\x00byte", 1, None, True, ["x"],
                                   {"v": "x"}, "x" * (MAX_STRING + 1)])
def test_refused_secret_values(value):
    assert set(invalid_fields(good(secrets={"DB_PASS": value}))) == {"secrets.DB_PASS"}


@pytest.mark.parametrize("secrets", [["A"], "A=1", 1, True])
def test_secrets_must_be_an_object(secrets):
    assert invalid_fields(good(secrets=secrets)) == ["secrets"]


def test_too_many_secrets():
    assert invalid_fields(good(secrets={f"S{i}": "v" for i in range(101)})) == ["secrets"]


def test_a_secret_also_in_env_is_refused():
    assert invalid_fields(good(env={"TOKEN": "plain"}, secrets={"TOKEN": "secret"})) == ["secrets.TOKEN"]


def test_other_errors_are_reported_with_secret_errors():
    fields = invalid_fields(good(image="", secrets={"A": "x\ny"}))
    assert set(fields) == {"image", "secrets.A"}


def test_invalid_secrets_are_never_sealed():
    seal = Recorder()
    with pytest.raises(Invalid):
        service_body(good(secrets={"GOOD": "fine", "BAD": "a\nb"}), NODES, seal=seal)
    with pytest.raises(Invalid):
        service_body(good(replicas=-1, secrets={"GOOD": "fine"}), NODES, seal=seal)
    assert seal.calls == []


@given(secrets=st.dictionaries(SECRET_NAMES, ONE_LINE, max_size=6))
def test_any_valid_secrets_are_sealed_once_each(secrets):
    seal = Recorder()
    _, spec, _ = service_body(good(secrets=secrets), NODES, seal=seal)
    assert sorted(seal.calls) == sorted(secrets.items())
    assert spec.secrets == tuple(sorted((k, fake_seal(k, v)) for k, v in secrets.items()))


@given(name=SECRET_NAMES, before=ONE_LINE, breaker=st.sampled_from(["\n", "\r", "\x00"]), after=ONE_LINE)
def test_any_value_with_a_line_break_or_nul_is_refused(name, before, breaker, after):
    assert set(invalid_fields(good(secrets={name: before + breaker + after}))) == {f"secrets.{name}"}


@given(key=st.text(max_size=20))
def test_secret_names_follow_the_env_key_pattern(key):
    body = good(secrets={key: "v"})
    if ENV_KEY.fullmatch(key):
        _, spec, _ = service_body(body, NODES, seal=fake_seal)
        assert [k for k, _ in spec.secrets] == [key]
    else:
        assert set(invalid_fields(body)) == {f"secrets.{key[:64]}"}


def test_an_invalid_secret_name_is_reported_once_and_truncated():
    key = "-" * 500
    assert invalid_fields(good(secrets={key: "a\nb"})) == ["secrets." + key[:64]]


STORED = ServiceSpec(image="nginx:1.25", env=(("MODE", "prod"),),
                     secrets=(("API_KEY", "sealed-api"), ("DB_PASS", "sealed-db")))


def test_a_patch_without_secrets_keeps_the_stored_sealed_values():
    _, spec, replicas = service_body({"replicas": 5, "image": "nginx:1.26"}, NODES, base=base_of(STORED),
                                     seal=never_seal)
    assert replicas == 5 and spec.image == "nginx:1.26"
    assert spec.secrets == STORED.secrets
    _, spec, _ = service_body({}, NODES, base=base_of(STORED), seal=None)
    assert spec == STORED


def test_an_empty_patch_keeps_the_digest():
    _, spec, _ = service_body({}, NODES, base=base_of(STORED), seal=never_seal)
    assert spec.digest() == STORED.digest()


def test_a_patch_with_empty_secrets_removes_them():
    _, spec, _ = service_body({"secrets": {}}, NODES, base=base_of(STORED), seal=never_seal)
    assert spec.secrets == ()
    assert "secrets" not in spec.to_dict()
    assert spec == ServiceSpec(image="nginx:1.25", env=(("MODE", "prod"),))


def test_a_patch_with_secrets_replaces_them_all():
    seal = Recorder()
    _, spec, _ = service_body({"secrets": {"DB_PASS": "new"}}, NODES, base=base_of(STORED), seal=seal)
    assert seal.calls == [("DB_PASS", "new")]
    assert spec.secrets == (("DB_PASS", "sealed:wen"),)
    assert spec.env == STORED.env


def test_a_patch_with_secrets_uses_reseal_through_seal():
    # As the API wires it: unchanged values keep their sealed form, so the digest does not change.
    current = ServiceSpec(image="nginx:1.25", secrets=(("A", VAULT.seal("one")), ("B", VAULT.seal("two"))))
    seal = lambda k, v: VAULT.reseal(current.secrets, k, v)                     # noqa: E731
    _, same, _ = service_body({"secrets": {"A": "one", "B": "two"}}, NODES, base=base_of(current), seal=seal)
    assert same == current and same.digest() == current.digest()
    _, changed, _ = service_body({"secrets": {"A": "one", "B": "2"}}, NODES, base=base_of(current), seal=seal)
    assert dict(changed.secrets)["A"] == dict(current.secrets)["A"]
    assert VAULT.unseal(dict(changed.secrets)["B"]) == "2"
    assert changed.digest() != current.digest()


def test_a_patch_adding_an_env_key_equal_to_a_stored_secret_is_refused():
    body = {"env": {"MODE": "prod", "DB_PASS": "plain"}}
    assert invalid_fields(body, base=base_of(STORED)) == ["secrets.DB_PASS"]


def test_a_patch_adding_a_secret_equal_to_a_stored_env_key_is_refused():
    assert invalid_fields({"secrets": {"MODE": "x"}}, base=base_of(STORED)) == ["secrets.MODE"]


def test_a_patch_may_move_a_secret_to_env_in_one_step():
    _, spec, _ = service_body({"env": {"DB_PASS": "plain"}, "secrets": {}}, NODES, base=base_of(STORED),
                              seal=never_seal)
    assert spec.env == (("DB_PASS", "plain"),) and spec.secrets == ()


def test_a_patch_with_invalid_secrets_is_refused():
    assert set(invalid_fields({"secrets": {"DB_PASS": "a\nb"}}, base=base_of(STORED))) == {"secrets.DB_PASS"}
    assert invalid_fields({"secrets": ["DB_PASS"]}, base=base_of(STORED)) == ["secrets"]


# ---------------------------------------------------------------- remote/commands.py run

def sealed_spec(plain):
    return ServiceSpec(image="nginx:1.25", command=("nginx", "-g", "daemon off;"), env=(("MODE", "prod"),),
                       ports=(Port(8080, 80),), labels=(("team", "web"),),
                       secrets=tuple(sorted((k, VAULT.seal(v)) for k, v in plain.items())))


def test_run_with_secrets_reads_an_env_file_from_stdin():
    plain = {"DB_PASS": "hunter2", "API_KEY": "k-123456"}
    spec = sealed_spec(plain)
    argv = commands.run("web.1.abc", "web", 1, spec, epoch=4)
    sep = argv.index("--")
    i = argv.index("--env-file")
    assert argv[i + 1] == "/dev/stdin"
    assert i < sep
    assert argv.count("--env-file") == 1
    assert argv[sep + 1:] == ["nginx:1.25", "nginx", "-g", "daemon off;"]
    line = shlex.join(argv)
    for name, sealed in spec.secrets:
        assert sealed not in line
        assert all(sealed not in arg for arg in argv)
    for value in plain.values():
        assert value not in line
    assert "DB_PASS" not in line and "API_KEY" not in line
    assert f"bicycle.spec={spec.digest()}" in argv


def test_run_without_secrets_has_no_env_file():
    spec = ServiceSpec(image="nginx:1.25", env=(("A", "1"),))
    argv = commands.run("web.1.abc", "web", 1, spec)
    assert "--env-file" not in argv and "/dev/stdin" not in argv


def test_run_with_secrets_otherwise_matches_the_run_without():
    spec = sealed_spec({"S": "value"})
    without = ServiceSpec(image=spec.image, command=spec.command, env=spec.env, ports=spec.ports,
                          labels=spec.labels)
    a = commands.run("web.1.abc", "web", 1, spec)
    b = commands.run("web.1.abc", "web", 1, without)
    strip = lambda argv: [x for x in argv if not x.startswith("bicycle.spec=")]   # noqa: E731
    sa = strip(a)
    i = sa.index("--env-file")
    assert sa[:i] + sa[i + 2:] == strip(b)


@settings(max_examples=50)
@given(plain=st.dictionaries(SECRET_NAMES, st.text(alphabet=B64URL + " !$;'\"", min_size=6, max_size=30),
                             min_size=1, max_size=4),
       command=st.lists(st.text(alphabet="abc-", max_size=12), max_size=3))
def test_run_never_puts_a_secret_on_the_command_line(plain, command):
    spec = ServiceSpec(image="alpine", command=tuple(command),
                       secrets=tuple(sorted((k, VAULT.seal(v)) for k, v in plain.items())))
    argv = commands.run("x.0.abc", "x", 0, spec)
    sep = argv.index("--")
    assert argv[sep - 2:sep] == ["--env-file", "/dev/stdin"]
    assert argv[sep + 1:] == ["alpine", *command]
    line = shlex.join(argv)
    without = ServiceSpec(image="alpine", command=tuple(command))
    bare = [x for x in commands.run("x.0.abc", "x", 0, without) if not x.startswith("bicycle.spec=")]
    assert [x for x in argv if not x.startswith("bicycle.spec=") and x not in ("--env-file", "/dev/stdin")] == bare
    for (name, sealed) in spec.secrets:
        assert sealed not in line
        assert plain[name] not in line or plain[name] in shlex.join(bare)


def test_specs_that_differ_only_in_how_their_secrets_were_sealed_are_the_same(tmp_path):
    """A retried create seals its secrets again (Fernet seals are random): it
    must still find the service it created."""
    vault = Vault.open_or_create(str(tmp_path / "key"))
    a = ServiceSpec(image="x:1", secrets=(("DB", vault.seal("s3cret")),))
    b = ServiceSpec(image="x:1", secrets=(("DB", vault.seal("s3cret")),))
    assert a != b and vault.same(a, b)
    assert not vault.same(a, ServiceSpec(image="x:1", secrets=(("DB", vault.seal("other")),)))
    assert not vault.same(a, ServiceSpec(image="x:2", secrets=b.secrets))
    assert not vault.same(a, ServiceSpec(image="x:1", secrets=(("PW", vault.seal("s3cret")),)))
