"""remote.lease: the exact lease, fencing and replica command lines that reach a node.

The scripts are spelled out here on purpose: this file is where a reader sees
what really runs on a node. Values only ever travel as positional parameters
after the script, so hostile holder names or argv words cannot become shell.
"""
import shlex

from hypothesis import given, settings, strategies as st

from remote import lease


def line(argv):
    return shlex.join(argv)


# The common opening of every lock-taking script, spelled out (not imported).
OPEN = 'D="$HOME/.bicycle"; mkdir -p "$D" && exec 9>>"$D/lock" || exit 2; '
# The node's epoch: a number; "unreadable" when it holds none while the node
# has an epoch, lease or replica file (lost in a crash); 0 on a fresh node.
EPOCH = (
    'cur=$(cat "$D/epoch" 2>/dev/null); case "$cur" in ""|*[!0-9]*) '
    'if [ -e "$D/epoch" ] || [ -e "$D/lease" ] || [ -e "$D/state.ver" ]; '
    'then cur=unreadable; else cur=0; fi;; esac; '
)

CLAIM_SCRIPT = (
    OPEN +
    'find "$D" -maxdepth 1 -name "state.in.*" -mmin +10 -exec rm -f {} + 2>/dev/null; '
    'flock -w 1 -x 9 || exit 2; ' + EPOCH +
    'if [ "$cur" = unreadable ]; then '
    'echo "claim $1 $2 refused unreadable" >> "$D/audit"; echo "unreadable"; '
    'elif [ "$cur" -lt "$1" ] && { [ -z "$3" ] || [ "$cur" = "$3" ]; }; then '
    'echo "$1" > "$D/epoch.tmp" && sync "$D/epoch.tmp" && mv "$D/epoch.tmp" "$D/epoch" && '
    'echo "$1 $2 0" > "$D/lease.tmp" && sync "$D/lease.tmp" && mv "$D/lease.tmp" "$D/lease" && '
    'sync "$D" || exit 2; '
    'echo "claim $1 $2 granted" >> "$D/audit"; echo "granted $1"; '
    'else echo "claim $1 $2 refused $cur" >> "$D/audit"; echo "refused $cur"; fi; '
    'echo "ver $(cat "$D/state.ver" 2>/dev/null)"; cat "$D/state.json" 2>/dev/null; exit 0'
)

RENEW_SCRIPT = (
    OPEN + 'flock -s 9 || exit 2; exec 7>>"$D/leaselock" && flock -x 7 || exit 2; ' + EPOCH +
    'if [ "$cur" = "$1" ]; then '
    'set -- "$1" "$2" $(cat "$D/lease" 2>/dev/null); '
    'n=$(( ${5:-0} + 1 )); '
    'echo "$1 $2 $n" > "$D/lease.tmp" && mv "$D/lease.tmp" "$D/lease" || exit 2; echo "ok $n"; '
    'else echo "lost $cur"; fi'
)

READ_SCRIPT = (
    OPEN + 'flock -s 9 || exit 2; ' + EPOCH +
    'echo "epoch $cur"; echo "lease $(cat "$D/lease" 2>/dev/null)"; '
    'echo "ver $(cat "$D/state.ver" 2>/dev/null)"'
)

READ_STATE_SCRIPT = (
    OPEN + 'flock -s 9 || exit 2; '
    'echo "ver $(cat "$D/state.ver" 2>/dev/null)"; cat "$D/state.json" 2>/dev/null; exit 0'
)

REPLICATE_SCRIPT = (
    OPEN +
    'umask 077; t="$D/state.in.$$"; unstage() { rm -f "$t"; }; '
    'trap unstage EXIT; trap "exit 2" HUP INT PIPE TERM; cat > "$t" || exit 2; '
    'n=$(wc -c < "$t") && s=$(sha256sum < "$t") || exit 2; s=${s%% *}; '
    'if [ "$n" != "$3" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: replica input incomplete: $n of $3 bytes" >&2; exit 96; fi; '
    'if [ "$s" != "$4" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: replica input digest mismatch: sha256 $s, expected $4" >&2; exit 96; fi; '
    'flock -s 9 || exit 2; ' + EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur replicate" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
    'exec 8>>"$D/statelock" && flock -x 8 || exit 2; '
    'set -- "$1" "$2" $(cat "$D/state.ver" 2>/dev/null); '
    'if [ "${3:-0}" -gt "$1" ] || { [ "${3:-0}" -eq "$1" ] && [ "${4:-0}" -ge "$2" ]; }; then '
    'echo "kept ${3:-0} ${4:-0}"; exit 0; fi; '
    'sync "$t" && mv "$t" "$D/state.json" && sync "$D" && '
    'echo "$1 $2" > "$D/state.ver.tmp" && sync "$D/state.ver.tmp" && '
    'mv "$D/state.ver.tmp" "$D/state.ver" && sync "$D" || exit 2; '
    'echo "written $1 $2"'
)

FENCED_SCRIPT = (
    OPEN + 'flock -s 9 || exit 2; ' + EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur $2" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
    'echo "accepted $1 $cur $2" >> "$D/audit"; shift 2; exec "$@"'
)

FENCED_INPUT_SCRIPT = (
    OPEN +
    'input=$(cat; echo .); input=${input%.}; n=$(printf %s "$input" | wc -c); '
    'if [ "$n" != "$3" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: input incomplete: $n of $3 bytes" >&2; exit 96; fi; '
    'flock -s 9 || exit 2; ' + EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur $2" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
    'echo "accepted $1 $cur $2" >> "$D/audit"; shift 3; printf %s "$input" | "$@"'
)

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"      # sha256 of "test"


# -- argv shape: the script, a $0 name, then the values -----------------------

def test_claim_argv():
    assert lease.claim(7, "m1") == ["sh", "-c", CLAIM_SCRIPT, "bicycle-claim", "7", "m1"]
    assert lease.claim(7, "m1", expected=0) == ["sh", "-c", CLAIM_SCRIPT, "bicycle-claim", "7", "m1", "0"]


def test_renew_argv():
    assert lease.renew(7, "m1") == ["sh", "-c", RENEW_SCRIPT, "bicycle-renew", "7", "m1"]


def test_read_argv():
    assert lease.read() == ["sh", "-c", READ_SCRIPT, "bicycle-read"]


def test_read_state_argv():
    assert lease.read_state() == ["sh", "-c", READ_STATE_SCRIPT, "bicycle-read-state"]


def test_replicate_argv():
    assert lease.replicate(7, 12, 4, SHA) == [
        "sh", "-c", REPLICATE_SCRIPT, "bicycle-replicate", "7", "12", "4", SHA]


def test_fenced_argv():
    assert lease.fenced(7, "run", ["docker", "rm", "-f", "abc"]) == [
        "sh", "-c", FENCED_SCRIPT, "bicycle-fenced", "7", "run", "docker", "rm", "-f", "abc"]


def test_fenced_argv_with_input():
    assert lease.fenced(7, "run", ["docker", "run", "--env-file", "/dev/stdin", "alpine"], stdin_length=12) == [
        "sh", "-c", FENCED_INPUT_SCRIPT, "bicycle-fenced-input", "7", "run", "12",
        "docker", "run", "--env-file", "/dev/stdin", "alpine"]
    assert lease.fenced(7, "run", ["true"], stdin_length=0)[2:] == [
        FENCED_INPUT_SCRIPT, "bicycle-fenced-input", "7", "run", "0", "true"]


def test_audit_argv():
    assert lease.audit() == ["sh", "-c", 'cat "$HOME/.bicycle/audit" 2>/dev/null; exit 0']


def test_fenced_exit_code():
    # election.py and loop.py tell "fenced" from any other failure by this code.
    assert lease.FENCED_EXIT == 97


def test_input_exit_code():
    # a torn input (short, or not of its digest): nothing was done on the node.
    assert lease.INPUT_EXIT == 96


# -- the full command lines (the script holds no single quote, so it is quoted
#    once, whole, in '...') ------------------------------------------------------

def quoted(script, tail):
    """The command line a node's sshd receives: the script in '...', then the words."""
    return "sh -c '" + script + "' " + tail


def test_claim_line():
    assert line(lease.claim(7, "m1")) == quoted(CLAIM_SCRIPT, "bicycle-claim 7 m1")


def test_renew_line():
    assert line(lease.renew(7, "m1")) == quoted(RENEW_SCRIPT, "bicycle-renew 7 m1")


def test_read_line():
    assert line(lease.read()) == quoted(READ_SCRIPT, "bicycle-read")


def test_read_state_line():
    assert line(lease.read_state()) == quoted(READ_STATE_SCRIPT, "bicycle-read-state")


def test_replicate_line():
    assert line(lease.replicate(7, 12, 4, SHA)) == quoted(REPLICATE_SCRIPT, f"bicycle-replicate 7 12 4 {SHA}")


def test_fenced_line():
    assert line(lease.fenced(7, "run", ["docker", "rm", "-f", "abc"])) == (
        quoted(FENCED_SCRIPT, "bicycle-fenced 7 run docker rm -f abc"))


def test_fenced_input_line():
    assert line(lease.fenced(7, "run", ["docker", "run", "--env-file", "/dev/stdin", "alpine"], stdin_length=12)) == (
        quoted(FENCED_INPUT_SCRIPT, "bicycle-fenced-input 7 run 12 docker run --env-file /dev/stdin alpine"))


def test_audit_line():
    assert line(lease.audit()) == """sh -c 'cat "$HOME/.bicycle/audit" 2>/dev/null; exit 0'"""


def test_numbers_become_decimal_words():
    assert lease.claim(1203, "m3")[-2:] == ["1203", "m3"]
    assert lease.replicate(1203, 0, 0, SHA)[-4:] == ["1203", "0", "0", SHA]
    assert lease.fenced(1203, "remove", [])[-2:] == ["1203", "remove"]
    assert lease.fenced(1203, "run", [], stdin_length=4096)[-3:] == ["1203", "run", "4096"]


def test_scripts_hold_no_single_quote():
    # Each script is quoted once, whole, in '...'; a quote inside would be
    # spliced as '"'"' and make the command line much harder to read.
    for script in (lease.CLAIM, lease.RENEW, lease.READ, lease.READ_STATE, lease.REPLICATE, lease.FENCED,
                   lease.FENCED_INPUT):
        assert "'" not in script


# -- hostile values stay positional parameters ----------------------------------

HOSTILE = [
    "m1; rm -rf ~",
    "$(touch pwned)",
    "`touch pwned`",
    "a'b\"c",
    "' ; touch pwned; '",
    "two words",
    "line\nbreak",
    "$HOME",
    "*",
    "-f",
    "",
]


def _values_after_script(argv, name):
    words = shlex.split(line(argv))
    assert words == argv
    assert words[:4] == ["sh", "-c", argv[2], name]
    return words[4:]


def test_hostile_holder_stays_one_parameter():
    for holder in HOSTILE:
        assert _values_after_script(lease.claim(7, holder), "bicycle-claim") == ["7", holder]
        assert _values_after_script(lease.renew(7, holder), "bicycle-renew") == ["7", holder]


def test_hostile_argv_words_stay_parameters():
    argv = ["docker", "run", "--name", "x; touch pwned", "-e", "A=$(id)", "alpine", "sh", "-c", "echo 'hi'"]
    assert _values_after_script(lease.fenced(7, "run", argv), "bicycle-fenced") == ["7", "run", *argv]
    assert _values_after_script(lease.fenced(7, "run; touch pwned", HOSTILE), "bicycle-fenced") == [
        "7", "run; touch pwned", *HOSTILE]
    assert _values_after_script(lease.fenced(7, "run", argv, stdin_length=3), "bicycle-fenced-input") == [
        "7", "run", "3", *argv]


def test_hostile_values_leave_the_script_untouched():
    # The script is a constant: whatever the values, argv[2] is the same text.
    assert lease.claim(7, "$(touch pwned)")[2] is lease.CLAIM
    assert lease.fenced(7, "`id`", ["'"])[2] is lease.FENCED
    assert lease.fenced(7, "`id`", ["'"], stdin_length=1)[2] is lease.FENCED_INPUT
    assert lease.replicate(7, 1, 1, "$(id)")[2] is lease.REPLICATE


@settings(max_examples=200, deadline=None)
@given(holder=st.text(), kind=st.text(), argv=st.lists(st.text(), max_size=5),
       epoch=st.integers(min_value=0, max_value=10**9))
def test_any_value_round_trips_through_one_quoting(holder, kind, argv, epoch):
    # A NUL cannot travel in a command line at all; everything else must.
    holder, kind = holder.replace("\0", ""), kind.replace("\0", "")
    argv = [a.replace("\0", "") for a in argv]
    for built in (lease.claim(epoch, holder), lease.renew(epoch, holder),
                  lease.replicate(epoch, epoch, epoch, SHA), lease.fenced(epoch, kind, argv),
                  lease.fenced(epoch, kind, argv, stdin_length=epoch)):
        assert shlex.split(line(built)) == built
