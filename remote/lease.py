"""Pure builders of the node-side lease, fencing and state-replica commands.

Node-side files live in ~/.bicycle/ of the node user and are touched only by
these scripts, with nothing but sh, flock, mv, cat, sync, wc, sha256sum, find
and printf (no agent, no Python):

  epoch        the highest epoch granted on this node
  lease        "EPOCH HOLDER COUNTER", bumped by the leader's renewals
  state.json   the replicated desired state; state.ver holds "EPOCH VERSION"
  state.in.PID a replica document being received (private, umask 077); it is
               installed as state.json or removed when its session ends, and a
               claim removes those of killed sessions after 10 minutes
  audit        one line per claim and per fenced action (accepted or refused),
               per refused replica write and per torn input
  lock         flock: claims take it exclusively, fenced actions shared;
               leaselock orders renewals, statelock replica writes

A file is replaced by renaming a whole new one over it (NAME.tmp, or the
staged state.in.PID for state.json). A grant (epoch, lease) and a replica
(state.json, then state.ver) are durable before they are answered: the new
file is synced before its rename and the folder after.

The epoch is "unreadable" when the epoch file holds no number while any of
epoch, lease or state.ver exists (a node that lost its epoch in a crash); a
fresh node, with none of them, is at epoch 0. An unreadable node grants no
claim, renews nothing and refuses every fenced action.

Input that comes on stdin (a replica document, the env of a container) is read
whole BEFORE the lock is taken, so a master cut off mid-send never holds the
lock, and its length (and a replica's sha256) is checked: a short input
changes nothing. Exit codes: 97 fenced (the node's epoch is not the actor's),
96 torn input, 2 the node's files failed or a claim waited for the lock in vain.

Every value reaches the script as a positional parameter ("$1" ...), so the
scripts themselves are constants and shlex.join quotes the values once.
"""

FENCED_EXIT = 97          # a fenced action refused because the epoch moved on (or is unreadable)
INPUT_EXIT = 96           # the input on stdin ended early or does not match its digest: nothing done

_PROLOGUE = (
    'D="$HOME/.bicycle"; mkdir -p "$D" && exec 9>>"$D/lock" || exit 2; '
)
_EPOCH = (
    'cur=$(cat "$D/epoch" 2>/dev/null); case "$cur" in ""|*[!0-9]*) '
    'if [ -e "$D/epoch" ] || [ -e "$D/lease" ] || [ -e "$D/state.ver" ]; '
    'then cur=unreadable; else cur=0; fi;; esac; '
)

# A claim waits at most a second for the running actions of an older epoch
# (they hold the lock shared): after the master stopped waiting, a late grant
# would depose the current leader on that node for nothing. The grant is on
# disk (files and folder synced) before it is answered. A claim that names
# the epoch it expects ($3) is granted only while the node is still at it.
CLAIM = (
    _PROLOGUE +
    'find "$D" -maxdepth 1 -name "state.in.*" -mmin +10 -exec rm -f {} + 2>/dev/null; '
    'flock -w 1 -x 9 || exit 2; ' + _EPOCH +
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

# Renewals never wait for running actions (shared lock; only a claim
# excludes them); renewals of one node are ordered by their own lock.
RENEW = (
    _PROLOGUE + 'flock -s 9 || exit 2; exec 7>>"$D/leaselock" && flock -x 7 || exit 2; ' + _EPOCH +
    'if [ "$cur" = "$1" ]; then '
    'set -- "$1" "$2" $(cat "$D/lease" 2>/dev/null); '
    'n=$(( ${5:-0} + 1 )); '
    'echo "$1 $2 $n" > "$D/lease.tmp" && mv "$D/lease.tmp" "$D/lease" || exit 2; echo "ok $n"; '
    'else echo "lost $cur"; fi'
)

READ = (
    _PROLOGUE + 'flock -s 9 || exit 2; ' + _EPOCH +
    'echo "epoch $cur"; echo "lease $(cat "$D/lease" 2>/dev/null)"; '
    'echo "ver $(cat "$D/state.ver" 2>/dev/null)"'
)

READ_STATE = (
    _PROLOGUE + 'flock -s 9 || exit 2; '
    'echo "ver $(cat "$D/state.ver" 2>/dev/null)"; cat "$D/state.json" 2>/dev/null; exit 0'
)

# $1 epoch, $2 version, $3 byte length, $4 sha256 of the document, which comes
# on stdin. It is staged in state.in.PID before any lock and checked whole;
# then fenced, and an older (epoch, version) never overwrites a newer one.
# state.json is installed (and durable) before state.ver names it.
REPLICATE = (
    _PROLOGUE +
    'umask 077; t="$D/state.in.$$"; unstage() { rm -f "$t"; }; '
    'trap unstage EXIT; trap "exit 2" HUP INT PIPE TERM; cat > "$t" || exit 2; '
    'n=$(wc -c < "$t") && s=$(sha256sum < "$t") || exit 2; s=${s%% *}; '
    'if [ "$n" != "$3" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: replica input incomplete: $n of $3 bytes" >&2; exit 96; fi; '
    'if [ "$s" != "$4" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: replica input digest mismatch: sha256 $s, expected $4" >&2; exit 96; fi; '
    'flock -s 9 || exit 2; ' + _EPOCH +
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

# The fence of a fenced command: $1 is the actor's epoch, $2 what it does.
_FENCE = (
    'flock -s 9 || exit 2; ' + _EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur $2" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
)

# $1 epoch, $2 kind (run, remove ...), then the command itself.
FENCED = (
    _PROLOGUE + _FENCE +
    'echo "accepted $1 $cur $2" >> "$D/audit"; shift 2; exec "$@"'
)

# $1 epoch, $2 kind, $3 byte length of stdin, then the command. The input
# (secrets among it) is read whole into a variable before the lock, never into
# a file, and reaches the command through the builtin printf: never in an argv.
FENCED_INPUT = (
    _PROLOGUE +
    'input=$(cat; echo .); input=${input%.}; n=$(printf %s "$input" | wc -c); '
    'if [ "$n" != "$3" ]; then echo "torn $1 $2" >> "$D/audit"; '
    'echo "bicycle: input incomplete: $n of $3 bytes" >&2; exit 96; fi; ' + _FENCE +
    'echo "accepted $1 $cur $2" >> "$D/audit"; shift 3; printf %s "$input" | "$@"'
)


def claim(epoch, holder, expected=None):
    """Claim `epoch` for `holder`; with `expected` (the epoch the claimer last
    read on this node) only if the node is still there: of two standbys that
    saw the same quiet lease, the second to reach a node finds it granted
    and gets no grant (one vote per node per view, as in Raft)."""
    return ["sh", "-c", CLAIM, "bicycle-claim", str(epoch), holder] + ([] if expected is None else [str(expected)])


def renew(epoch, holder):
    return ["sh", "-c", RENEW, "bicycle-renew", str(epoch), holder]


def read():
    return ["sh", "-c", READ, "bicycle-read"]


def read_state():
    return ["sh", "-c", READ_STATE, "bicycle-read-state"]


def replicate(epoch, version, length, digest):
    """The document goes on stdin: length is its byte length, digest its sha256 hex."""
    return ["sh", "-c", REPLICATE, "bicycle-replicate", str(epoch), str(version), str(length), digest]


def fenced(epoch, kind, argv, stdin_length=None):
    """argv under the epoch fence; with stdin_length, the command's stdin (that
    many bytes) is read whole before the lock and handed to it."""
    if stdin_length is None:
        return ["sh", "-c", FENCED, "bicycle-fenced", str(epoch), kind, *argv]
    return ["sh", "-c", FENCED_INPUT, "bicycle-fenced-input", str(epoch), kind, str(stdin_length), *argv]


def audit():
    return ["sh", "-c", 'cat "$HOME/.bicycle/audit" 2>/dev/null; exit 0']
