"""remote.lease scripts run for real: /bin/sh and flock on files in a tmp HOME.

Each test is one node: ~/.bicycle lives under the test's tmp_path. Answers are
read with remote.parse, exactly as the master reads them, so the scripts and
the parsers are checked together. No network, no Docker.
"""
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from model import ClaimAnswer, Lease, LeaseRead, NO_STAMP, RenewAnswer, Replica, Stamp
from remote import lease, parse

pytestmark = pytest.mark.skipif(not (os.path.exists("/bin/sh") and shutil.which("flock")),
                                reason="needs /bin/sh and flock")

FILES = ("epoch", "lease", "state.json", "state.ver")
PATH = os.environ.get("PATH", "/usr/bin:/bin")


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def granted(epoch, stamp=NO_STAMP, text=""):
    return ClaimAnswer(True, epoch, Replica(stamp, text))


def refused(node_epoch, stamp=NO_STAMP, text=""):
    return ClaimAnswer(False, node_epoch, Replica(stamp, text))


class Node:
    """One node's HOME; runs the built argv with /bin/sh, as sshd would."""

    def __init__(self, home):
        self.home = home
        self.dir = home / ".bicycle"
        self.path = PATH

    def env(self):
        return {"HOME": str(self.home), "PATH": self.path}

    def run(self, argv, stdin=None):
        assert argv[:2] == ["sh", "-c"]
        return subprocess.run(["/bin/sh", *argv[1:]], input=stdin, capture_output=True, text=True,
                              encoding="utf-8", env=self.env(), cwd=self.home, timeout=20)

    def start(self, argv):
        """The script running, its stdin a pipe the test writes and closes."""
        assert argv[:2] == ["sh", "-c"]
        return subprocess.Popen(["/bin/sh", *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", env=self.env(),
                                cwd=self.home)

    def spy(self, *tools):
        """Put logging wrappers of these tools first on PATH: each call appends
        'TOOL ARGS' to the returned log file, then runs the real tool."""
        bin_dir = self.home / "spy"
        bin_dir.mkdir(exist_ok=True)
        log = self.home / "spy.log"
        for tool in tools:
            real = shutil.which(tool, path=PATH)
            wrapper = bin_dir / tool
            wrapper.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n'
                               + (f'exec "{real}" "$@"\n' if real else "exit 127\n"))
            wrapper.chmod(0o755)
        self.path = f"{bin_dir}:{self.path}"
        return log

    def claim(self, epoch, holder, expected=None):
        result = self.run(lease.claim(epoch, holder, expected))
        assert result.returncode == 0, result.stderr
        return parse.claim(result.stdout)

    def renew(self, epoch, holder):
        result = self.run(lease.renew(epoch, holder))
        assert result.returncode == 0, result.stderr
        return parse.renew(result.stdout)

    def read(self):
        result = self.run(lease.read())
        assert result.returncode == 0, result.stderr
        return parse.lease(result.stdout)

    def read_state(self):
        result = self.run(lease.read_state())
        assert result.returncode == 0, result.stderr
        return parse.replica(result.stdout)

    def replicate(self, epoch, version, text, length=None, sha=None):
        """Send text as the document; length and sha default to the text's own."""
        length = len(text.encode()) if length is None else length
        return self.run(lease.replicate(epoch, version, length, sha or digest(text)), stdin=text)

    def fenced(self, epoch, kind, argv, stdin=None, length=None):
        """With stdin, announce its length (or the given one) to the script."""
        if stdin is None:
            return self.run(lease.fenced(epoch, kind, argv))
        length = len(stdin.encode()) if length is None else length
        return self.run(lease.fenced(epoch, kind, argv, stdin_length=length), stdin=stdin)

    def audit(self):
        result = self.run(lease.audit())
        assert result.returncode == 0
        return result.stdout.splitlines()

    def file(self, name):
        path = self.dir / name
        return path.read_text() if path.exists() else None

    def files(self):
        """Content, inode and mtime of every lease file: a rename or a rewrite shows."""
        out = {}
        for name in FILES:
            path = self.dir / name
            if path.exists():
                st = path.stat()
                out[name] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
        return out

    def leftovers(self):
        """Temporary and staged files left behind."""
        return sorted(p.name for p in self.dir.iterdir()
                      if p.name.endswith(".tmp") or p.name.startswith("state.in."))


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path)


# -- claim ------------------------------------------------------------------------

def test_claim_on_a_fresh_node_is_granted(node):
    assert node.claim(7, "m1") == granted(7)
    assert node.file("epoch") == "7\n"
    assert node.file("lease") == "7 m1 0\n"
    assert node.audit() == ["claim 7 m1 granted"]
    assert node.leftovers() == []


@pytest.mark.parametrize("epoch", [7, 6, 0])
def test_claim_of_an_epoch_not_above_the_node_is_refused_and_changes_nothing(node, epoch):
    node.claim(7, "m1")
    node.renew(7, "m1")
    assert node.replicate(7, 3, '{"v": 3}').returncode == 0
    before = node.files()
    time.sleep(0.01)            # so a rewrite would show in the mtime too
    assert node.claim(epoch, "m2") == refused(7, Stamp(7, 3), '{"v": 3}')
    assert node.files() == before
    assert node.audit()[-1] == f"claim {epoch} m2 refused 7"


def test_claim_of_a_higher_epoch_takes_the_node_over(node):
    node.claim(7, "m1")
    node.renew(7, "m1")
    assert node.claim(102, "m2") == granted(102)
    assert node.file("epoch") == "102\n"
    assert node.file("lease") == "102 m2 0\n"
    assert node.read() == LeaseRead(102, Lease(102, "m2", 0), NO_STAMP)


def test_a_claim_that_expects_an_epoch_is_granted_only_while_the_node_is_at_it(node):
    node.claim(101, "m1")
    assert node.claim(202, "m2", expected=101) == granted(202)       # the first of two who saw 101
    assert node.claim(203, "m3", expected=101) == refused(202)       # the second: the node moved on
    assert node.file("lease") == "202 m2 0\n"
    assert node.audit()[-1] == "claim 203 m3 refused 202"
    assert node.claim(303, "m3", expected=202) == granted(303)       # a view of the node as it is
    assert node.claim(404, "m1") == granted(404)                     # no expectation: as before


def test_claim_compares_epochs_as_numbers(node):
    # "9" > "10" as text; the node must compare numbers.
    node.claim(9, "m1")
    assert node.claim(10, "m2") == granted(10)
    assert node.claim(9, "m1") == refused(10)


def test_claim_answers_with_the_replica_in_the_same_step(node):
    node.claim(7, "m1")
    doc = '{"epoch": 7, "services": [], "version": 12}'
    assert node.replicate(7, 12, doc).stdout == "written 7 12\n"
    assert node.claim(102, "m2") == granted(102, Stamp(7, 12), doc)
    assert node.claim(101, "m1") == refused(102, Stamp(7, 12), doc)


def test_hostile_holder_is_stored_literally_not_run(node):
    node.claim(7, "$(touch pwned)")
    assert not (node.home / "pwned").exists()
    assert node.file("lease") == "7 $(touch pwned) 0\n"
    assert node.audit() == ["claim 7 $(touch pwned) granted"]


def test_a_grant_is_on_disk_before_it_is_answered(node):
    log = node.spy("sync", "mv")
    node.claim(7, "m1")
    d = node.dir
    assert log.read_text().splitlines() == [
        f"sync {d}/epoch.tmp", f"mv {d}/epoch.tmp {d}/epoch",
        f"sync {d}/lease.tmp", f"mv {d}/lease.tmp {d}/lease",
        f"sync {d}",
    ]
    log.unlink()
    node.claim(7, "m2")
    assert not log.exists()             # a refusal writes nothing


def lose_epoch(node, epoch_text, keep):
    """A node of epoch 7 (lease, replica (7, 3)) whose epoch file was lost in a
    crash: epoch_text None removes it; of lease and state.ver only keep remain."""
    node.claim(7, "m1")
    assert node.replicate(7, 3, "three").returncode == 0
    for name in ("lease", "state.ver"):
        if name not in keep:
            (node.dir / name).unlink()
    if epoch_text is None:
        (node.dir / "epoch").unlink()
    else:
        (node.dir / "epoch").write_text(epoch_text)


LOST_EPOCHS = [
    pytest.param(None, ("lease", "state.ver"), id="missing"),
    pytest.param("", ("lease", "state.ver"), id="empty"),
    pytest.param("seven\n", ("lease", "state.ver"), id="garbage"),
    pytest.param("7x\n", ("lease",), id="garbage-lease-only"),
    pytest.param(None, ("state.ver",), id="missing-replica-only"),
    pytest.param("", (), id="empty-epoch-file-only"),
]


@pytest.mark.parametrize("epoch_text, keep", LOST_EPOCHS)
def test_a_node_that_lost_its_epoch_grants_no_claim(node, epoch_text, keep):
    lose_epoch(node, epoch_text, keep)
    before = node.files()
    stamp = Stamp(7, 3) if "state.ver" in keep else NO_STAMP
    assert node.claim(8, "m2") == ClaimAnswer(False, None, Replica(stamp, "three"))
    assert node.claim(10**6, "m3") == ClaimAnswer(False, None, Replica(stamp, "three"))
    assert node.files() == before
    assert node.audit()[-2:] == ["claim 8 m2 refused unreadable", f"claim {10**6} m3 refused unreadable"]


@pytest.mark.parametrize("epoch_text, keep", LOST_EPOCHS)
def test_a_node_that_lost_its_epoch_renews_and_runs_nothing(node, epoch_text, keep):
    lose_epoch(node, epoch_text, keep)
    before = node.files()
    read = node.read()
    assert (read.node_epoch, read.lease) == (None, Lease(7, "m1", 0) if "lease" in keep else None)
    assert node.renew(7, "m1") == RenewAnswer(False, None)
    target = node.home / "ran"
    for result in (node.fenced(7, "run", ["touch", str(target)]),
                   node.fenced(7, "run", ["touch", str(target)], stdin="A=1\n"),
                   node.replicate(7, 4, "four")):
        assert result.returncode == lease.FENCED_EXIT
        assert result.stderr == "bicycle: fenced: node epoch unreadable, actor 7\n"
    assert not target.exists()
    assert node.files() == before
    assert node.audit()[-3:] == ["refused 7 unreadable run", "refused 7 unreadable run",
                                 "refused 7 unreadable replicate"]


def test_a_claim_removes_staged_inputs_of_killed_sessions(node):
    node.dir.mkdir()
    stale, arriving, other = node.dir / "state.in.111", node.dir / "state.in.222", node.dir / "state.json"
    for path in (stale, arriving, other):
        path.write_text("{")
    eleven_minutes_ago = time.time() - 11 * 60
    for path in (stale, other):
        os.utime(path, (eleven_minutes_ago, eleven_minutes_ago))
    assert node.claim(7, "m1") == granted(7, NO_STAMP, "{")
    assert not stale.exists()
    assert arriving.exists() and other.exists()


# -- renew ------------------------------------------------------------------------

def test_renew_bumps_the_counter_of_the_current_epoch(node):
    node.claim(7, "m1")
    assert node.renew(7, "m1") == RenewAnswer(True, 1)
    assert node.renew(7, "m1") == RenewAnswer(True, 2)
    assert node.file("lease") == "7 m1 2\n"
    assert node.file("epoch") == "7\n"
    assert node.leftovers() == []


def test_renew_of_another_epoch_answers_lost_and_changes_nothing(node):
    node.claim(7, "m1")
    node.renew(7, "m1")
    before = node.files()
    assert node.renew(6, "m1") == RenewAnswer(False, 7)
    assert node.renew(8, "m1") == RenewAnswer(False, 7)
    assert node.files() == before
    node.claim(102, "m2")
    assert node.renew(7, "m1") == RenewAnswer(False, 102)
    assert node.file("lease") == "102 m2 0\n"


def test_renew_on_a_fresh_node_answers_lost_0(node):
    assert node.renew(7, "m1") == RenewAnswer(False, 0)
    assert node.file("lease") is None


def test_renew_is_not_audited(node):
    node.claim(7, "m1")
    node.renew(7, "m1")
    node.renew(6, "m1")
    assert node.audit() == ["claim 7 m1 granted"]


# -- read, read_state -------------------------------------------------------------

def test_read_of_a_fresh_node(node):
    assert node.read() == LeaseRead(0, None, NO_STAMP)
    assert node.read_state() == Replica(NO_STAMP, "")


def test_read_reports_epoch_lease_and_version(node):
    node.claim(7, "m1")
    node.renew(7, "m1")
    node.replicate(7, 12, "{}")
    assert node.read() == LeaseRead(7, Lease(7, "m1", 1), Stamp(7, 12))
    assert node.read_state() == Replica(Stamp(7, 12), "{}")
    node.claim(102, "m2")
    assert node.read() == LeaseRead(102, Lease(102, "m2", 0), Stamp(7, 12))


def test_read_changes_nothing(node):
    node.claim(7, "m1")
    before = node.files()
    node.read()
    node.read_state()
    assert node.files() == before
    assert node.audit() == ["claim 7 m1 granted"]


# -- replicate --------------------------------------------------------------------

def test_replicate_on_an_unclaimed_node_is_fenced(node):
    result = node.replicate(7, 1, "{}")
    assert result.returncode == lease.FENCED_EXIT
    assert result.stderr == "bicycle: fenced: node epoch 0, actor 7\n"
    assert node.file("state.json") is None and node.file("state.ver") is None
    assert node.audit() == ["refused 7 0 replicate"]


def test_replicate_writes_the_document_and_its_version(node):
    node.claim(7, "m1")
    doc = '{"services": [{"name": "web"}],\n "version": 1}\n'
    result = node.replicate(7, 1, doc)
    assert (result.returncode, result.stdout) == (0, "written 7 1\n")
    assert node.file("state.json") == doc
    assert node.file("state.ver") == "7 1\n"
    assert node.leftovers() == []


def test_replicate_never_goes_back_within_an_epoch(node):
    node.claim(7, "m1")
    node.replicate(7, 5, "five")
    for version in (5, 4, 0):
        result = node.replicate(7, version, "older")
        assert (result.returncode, result.stdout) == (0, "kept 7 5\n")
    assert node.file("state.json") == "five"
    assert node.replicate(7, 6, "six").stdout == "written 7 6\n"
    assert node.read_state() == Replica(Stamp(7, 6), "six")
    assert node.leftovers() == []


def test_replicate_of_a_new_epoch_replaces_a_higher_version_of_an_older_one(node):
    node.claim(7, "m1")
    node.replicate(7, 30, "old epoch, many writes")
    node.claim(102, "m2")
    assert node.replicate(102, 3, "new epoch").stdout == "written 102 3\n"
    assert node.read_state() == Replica(Stamp(102, 3), "new epoch")


def test_replicate_of_a_deposed_epoch_is_fenced_and_changes_nothing(node):
    node.claim(7, "m1")
    node.replicate(7, 5, "five")
    node.claim(102, "m2")
    before = node.files()
    result = node.replicate(7, 6, "six")
    assert result.returncode == lease.FENCED_EXIT
    assert result.stdout == ""
    assert result.stderr == "bicycle: fenced: node epoch 102, actor 7\n"
    assert node.files() == before
    assert node.audit()[-1] == "refused 7 102 replicate"


def test_replicate_keeps_a_replica_of_a_newer_epoch(node):
    # Cannot happen through the scripts (the fence comes first); crafted here to
    # pin the comparison: the epoch ranks before the version.
    node.claim(7, "m1")
    (node.dir / "state.ver").write_text("9 1\n")
    (node.dir / "state.json").write_text("nine")
    assert node.replicate(7, 50, "seven").stdout == "kept 9 1\n"
    assert node.file("state.json") == "nine"


def test_parallel_replicates_end_on_the_highest_and_readers_never_see_a_torn_document(node):
    node.claim(7, "m1")
    docs = {v: f'{{"version": {v}, "pad": "{"x" * 20000}"}}' for v in range(1, 21)}
    order = [13, 2, 20, 7, 1, 18, 5, 11, 16, 3, 9, 19, 4, 14, 8, 17, 6, 12, 15, 10]
    with ThreadPoolExecutor(max_workers=30) as pool:
        writes = [pool.submit(node.replicate, 7, v, docs[v]) for v in order]
        reads = [pool.submit(node.read_state) for _ in range(10)]
        assert all(w.result().returncode == 0 for w in writes)
        for replica in (r.result() for r in reads):
            epoch, version, text = replica.stamp.epoch, replica.stamp.version, replica.text
            if text:
                # the whole of one written document, never a piece of one; the
                # version line may lag the document (it is renamed second), never lead it
                assert text in docs.values()
                assert int(text.split(",")[0].split()[-1]) >= version
            assert (epoch, version) == (0, 0) or (epoch == 7 and version in docs)
    assert node.read_state() == Replica(Stamp(7, 20), docs[20])
    assert node.leftovers() == []


def test_replicate_installs_the_document_durably_before_its_version(node):
    node.claim(7, "m1")
    log = node.spy("sync", "mv")
    assert node.replicate(7, 1, "one").stdout == "written 7 1\n"
    d = node.dir
    lines = log.read_text().splitlines()
    staged = lines[0].split()[-1]
    assert staged.startswith(f"{d}/state.in.")
    assert lines == [
        f"sync {staged}", f"mv {staged} {d}/state.json", f"sync {d}",
        f"sync {d}/state.ver.tmp", f"mv {d}/state.ver.tmp {d}/state.ver", f"sync {d}",
    ]
    assert stat.S_IMODE((d / "state.json").stat().st_mode) == 0o600
    assert node.leftovers() == []


DOC = '{"services": [{"name": "caf\u00e9"}],\n "version": 2}\n'


@pytest.mark.parametrize("cut", [0, 1, 20, len(DOC.encode()) - 1])
def test_a_short_replica_input_is_refused_and_changes_nothing(node, cut):
    node.claim(7, "m1")
    node.replicate(7, 1, "one")
    before, audit = node.files(), node.audit()
    sent = DOC.encode()[:cut].decode(errors="ignore")
    result = node.replicate(7, 2, sent, length=len(DOC.encode()), sha=digest(DOC))
    assert (result.returncode, result.stdout) == (lease.INPUT_EXIT, "")
    assert result.stderr == f"bicycle: replica input incomplete: {len(sent.encode())} of {len(DOC.encode())} bytes\n"
    assert node.files() == before
    assert node.audit() == audit + ["torn 7 2"]
    assert node.leftovers() == []


def test_a_replica_input_of_the_wrong_digest_is_refused_and_changes_nothing(node):
    node.claim(7, "m1")
    node.replicate(7, 1, "one")
    before = node.files()
    forged = DOC.replace("2", "3")
    result = node.replicate(7, 2, forged, sha=digest(DOC))
    assert result.returncode == lease.INPUT_EXIT
    assert result.stderr == (f"bicycle: replica input digest mismatch: sha256 {digest(forged)}, "
                             f"expected {digest(DOC)}\n")
    assert node.files() == before
    assert node.audit()[-1] == "torn 7 2"
    assert node.leftovers() == []


def test_a_torn_replica_input_is_refused_before_the_fence_is_looked_at(node):
    node.claim(7, "m1")
    node.claim(8, "m2")
    result = node.replicate(7, 2, "{", length=2)
    assert result.returncode == lease.INPUT_EXIT
    assert node.audit()[-1] == "torn 7 2"
    assert node.file("state.json") is None


# -- fenced actions ---------------------------------------------------------------

def test_fenced_action_runs_only_at_the_node_epoch(node):
    target = node.home / "ran"
    refused = node.fenced(7, "run", ["touch", str(target)])
    assert refused.returncode == lease.FENCED_EXIT
    assert refused.stderr == "bicycle: fenced: node epoch 0, actor 7\n"
    assert not target.exists()

    node.claim(7, "m1")
    assert node.fenced(7, "run", ["touch", str(target)]).returncode == 0
    assert target.exists()

    target.unlink()
    node.claim(102, "m2")
    for epoch in (7, 101, 103):
        assert node.fenced(epoch, "remove", ["touch", str(target)]).returncode == lease.FENCED_EXIT
    assert not target.exists()
    assert node.audit() == ["refused 7 0 run", "claim 7 m1 granted", "accepted 7 7 run",
                            "claim 102 m2 granted", "refused 7 102 remove", "refused 101 102 remove",
                            "refused 103 102 remove"]


def test_fenced_action_passes_the_command_output_and_exit_code_through(node):
    node.claim(7, "m1")
    result = node.fenced(7, "run", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_fenced_action_argv_is_not_reparsed(node):
    node.claim(7, "m1")
    assert node.fenced(7, "run", ["touch", "a b; touch pwned", "$(touch pwned2)"]).returncode == 0
    assert sorted(p.name for p in node.home.iterdir() if not p.name.startswith(".")) == [
        "$(touch pwned2)", "a b; touch pwned"]




SECRET = "A=1\nB=$(touch pwned) `touch pwned` %s \\n -n caf\u00e9\nC=\n\n\n"


def test_fenced_input_reaches_the_command_whole_and_literally(node):
    node.claim(7, "m1")
    got = node.home / "got"
    result = node.fenced(7, "run", ["sh", "-c", 'cat > "$1"; echo out; exit 3', "x", str(got)], stdin=SECRET)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "")
    assert got.read_text(encoding="utf-8") == SECRET
    assert not (node.home / "pwned").exists()
    assert node.audit()[-1] == "accepted 7 7 run"
    assert node.leftovers() == []
    assert not [p for p in node.dir.iterdir() if "B=" in p.read_text(errors="ignore")]


def test_fenced_input_reaches_the_command_through_no_program(node):
    # printf must be the shell's builtin: a program's argv would show the input to ps.
    node.claim(7, "m1")
    log = node.spy("printf", "echo")
    assert node.fenced(7, "run", ["cat"], stdin=SECRET).stdout == SECRET
    assert not log.exists()


@pytest.mark.parametrize("sent, length", [("", 4), ("A=1", 4), ("A=1\n", 3)])
def test_a_short_fenced_input_runs_nothing(node, sent, length):
    node.claim(7, "m1")
    target = node.home / "ran"
    result = node.fenced(7, "run", ["touch", str(target)], stdin=sent, length=length)
    assert (result.returncode, result.stdout) == (lease.INPUT_EXIT, "")
    assert result.stderr == f"bicycle: input incomplete: {len(sent)} of {length} bytes\n"
    assert not target.exists()
    assert node.audit() == ["claim 7 m1 granted", "torn 7 run"]


def test_fenced_input_of_a_deposed_epoch_is_fenced(node):
    node.claim(7, "m1")
    node.claim(8, "m2")
    target = node.home / "ran"
    result = node.fenced(7, "run", ["touch", str(target)], stdin=SECRET)
    assert result.returncode == lease.FENCED_EXIT
    assert result.stderr == "bicycle: fenced: node epoch 8, actor 7\n"
    assert not target.exists()
    assert node.audit()[-1] == "refused 7 8 run"


def test_audit_records_claims_and_actions_in_order(node):
    node.claim(7, "m1")
    node.fenced(7, "run", ["true"])
    node.claim(5, "m2")
    node.fenced(7, "remove", ["true"])
    node.claim(102, "m2")
    node.fenced(7, "run", ["true"])
    node.replicate(7, 1, "{}")
    node.fenced(102, "remove", ["true"])
    assert node.audit() == [
        "claim 7 m1 granted",
        "accepted 7 7 run",
        "claim 5 m2 refused 7",
        "accepted 7 7 remove",
        "claim 102 m2 granted",
        "refused 7 102 run",
        "refused 7 102 replicate",
        "accepted 102 102 remove",
    ]


def test_audit_of_a_fresh_node_is_empty(node):
    assert node.audit() == []


# -- a claim against a stream of actions ------------------------------------------

def test_no_action_of_the_old_epoch_is_accepted_or_still_running_after_a_newer_claim(node):
    """30 actions of epoch 7 overlap one claim of epoch 8: the claim waits for
    the running ones, and every one that comes later is refused."""
    node.claim(7, "m1")
    # The action itself appends "done I" to the audit file, so the audit also
    # shows when each accepted action had finished, in the same order.
    done = 'sleep 0.05; echo "done $1" >> "$HOME/.bicycle/audit"'
    claimed = threading.Event()
    claim_answer = {}

    def action(i):
        if i >= 25:
            claimed.wait(10)            # these surely start after the claim's answer
        else:
            time.sleep(0.01 * i)
        started = time.monotonic()
        result = node.fenced(7, "run", ["sh", "-c", done, "action", str(i)])
        return i, started, result.returncode

    def claim():
        deadline = time.monotonic() + 10
        while sum(1 for a in node.audit() if a.startswith("accepted 7")) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        claim_answer["value"] = node.claim(8, "m2")
        claim_answer["at"] = time.monotonic()
        claimed.set()

    with ThreadPoolExecutor(max_workers=31) as pool:
        actions = [pool.submit(action, i) for i in range(30)]
        pool.submit(claim).result()
        results = [a.result() for a in actions]

    assert claim_answer["value"] == granted(8)
    audit = node.audit()
    cut = audit.index("claim 8 m2 granted")
    before, after = audit[:cut], audit[cut + 1:]
    assert not [a for a in after if a.startswith("accepted") or a.startswith("done")]
    accepted = [a for a in before if a.startswith("accepted 7 7 run")]
    assert len(accepted) >= 5
    assert len([a for a in before if a.startswith("done")]) == len(accepted)
    assert all(a == "refused 7 8 run" for a in after)
    assert len(accepted) + len(after) == 30 and not [a for a in before if a.startswith("refused")]

    assert sorted(rc for _, _, rc in results) == [0] * len(accepted) + [lease.FENCED_EXIT] * len(after)
    assert all(rc == lease.FENCED_EXIT for i, started, rc in results if started > claim_answer["at"])
    assert {i for i, _, rc in results if i >= 25} and all(rc == lease.FENCED_EXIT for i, _, rc in results if i >= 25)


def test_renew_is_not_held_up_by_a_running_action(node):
    """An action that runs until it is released holds the node's action lock;
    a renewal answers while it still runs (order, not a duration: the action
    is released only after the renewal answered, or after 10 s if it hangs)."""
    node.claim(7, "m1")
    release = os.path.join(node.home, "release")
    wait = f'while [ ! -e {shlex.quote(release)} ]; do sleep 0.01; done'
    long_action = subprocess.Popen(["/bin/sh", *lease.fenced(7, "run", ["sh", "-c", wait])[1:]], env=node.env())
    fallback = threading.Timer(10, lambda: open(release, "w").close())
    fallback.start()
    try:
        deadline = time.monotonic() + 5
        while "accepted 7 7 run" not in node.audit() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert "accepted 7 7 run" in node.audit()
        assert node.renew(7, "m1") == RenewAnswer(True, 1)
        assert not os.path.exists(release) and long_action.poll() is None, "the renewal waited for the action"
    finally:
        open(release, "w").close()
        fallback.cancel()
        long_action.wait(10)


# -- input still arriving holds no lock ---------------------------------------------

PARTIAL = 256 * 1024    # four pipe buffers: once the pipe took it, the script had read most of it


def send(proc, data):
    """Write data to proc's stdin and return once the pipe took all of it, i.e.
    once the script has read all but a pipe buffer of it; stdin stays open."""
    def write():
        proc.stdin.write(data)
        proc.stdin.flush()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(20)
    assert not writer.is_alive(), "the script stopped reading its input"


def finish(proc):
    """Close proc's stdin short; -> (exit code, stdout, stderr)."""
    try:
        proc.stdin.close()
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, proc.stdout.read(), proc.stderr.read()


def test_no_lock_is_held_while_a_replica_is_arriving(node):
    node.claim(7, "m1")
    node.replicate(7, 1, "one")
    doc = "x" * (4 * PARTIAL)
    sender = node.start(lease.replicate(7, 2, len(doc), digest(doc)))
    try:
        send(sender, doc[:PARTIAL])
        # CLAIM waits at most a second for the lock (then exits 2): it is granted
        # only because the sender, still waiting for input, holds no lock.
        assert node.claim(8, "m2") == granted(8, Stamp(7, 1), "one")
        staged = [p for p in node.dir.iterdir() if p.name.startswith("state.in.")]
        assert [stat.S_IMODE(p.stat().st_mode) for p in staged] == [0o600]
    finally:
        code, out, err = finish(sender)
    assert (code, out) == (lease.INPUT_EXIT, "")
    assert err == f"bicycle: replica input incomplete: {PARTIAL} of {len(doc)} bytes\n"
    assert node.read_state() == Replica(Stamp(7, 1), "one")
    assert node.audit()[-2:] == ["claim 8 m2 granted", "torn 7 2"]
    assert node.leftovers() == []


def test_no_lock_is_held_while_a_fenced_input_is_arriving(node):
    node.claim(7, "m1")
    target = node.home / "ran"
    env = "A=" + "x" * (4 * PARTIAL) + "\n"
    sender = node.start(lease.fenced(7, "run", ["sh", "-c", 'cat > "$1"', "x", str(target)],
                                     stdin_length=len(env)))
    try:
        send(sender, env[:PARTIAL])
        assert node.claim(8, "m2") == granted(8)
    finally:
        code, out, err = finish(sender)
    assert (code, out) == (lease.INPUT_EXIT, "")
    assert err == f"bicycle: input incomplete: {PARTIAL} of {len(env)} bytes\n"
    assert not target.exists()
    assert node.audit() == ["claim 7 m1 granted", "claim 8 m2 granted", "torn 7 run"]
    assert node.leftovers() == []
