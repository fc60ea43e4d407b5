"""Pure builders of the node-side lease, fencing and state-replica commands.

Node-side files live in ~/.bicycle/ of the node user and are touched only by
these scripts, with nothing but sh, flock, mv and cat (no agent, no Python):

  epoch        the highest epoch granted on this node
  lease        "EPOCH HOLDER COUNTER", bumped by the leader's renewals
  state.json   the replicated desired state; state.ver holds "EPOCH VERSION"
  audit        one line per claim and per fenced action (accepted or refused),
               and per refused replica write
  lock         flock: claims take it exclusively, fenced actions shared

Every value reaches the script as a positional parameter ("$1" ...), so the
scripts themselves are constants and shlex.join quotes the values once.
"""

FENCED_EXIT = 97          # a fenced action refused because the epoch moved on

_PROLOGUE = (
    'D="$HOME/.bicycle"; mkdir -p "$D" && exec 9>>"$D/lock" || exit 2; '
)
_EPOCH = 'cur=$(cat "$D/epoch" 2>/dev/null); cur=${cur:-0}; '

# A claim waits at most a second for the running actions of an older epoch
# (they hold the lock shared): after the master stopped waiting, a late grant
# would depose the current leader on that node for nothing.
CLAIM = (
    _PROLOGUE + 'flock -w 1 -x 9 || exit 2; ' + _EPOCH +
    'if [ "$cur" -lt "$1" ]; then '
    'echo "$1" > "$D/epoch.tmp" && mv "$D/epoch.tmp" "$D/epoch" && '
    'echo "$1 $2 0" > "$D/lease.tmp" && mv "$D/lease.tmp" "$D/lease" || exit 2; '
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

# $1 epoch, $2 version; the document comes on stdin. Fenced; an older
# (epoch, version) never overwrites a newer one.
REPLICATE = (
    _PROLOGUE + 'flock -s 9 || exit 2; ' + _EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur replicate" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
    'exec 8>>"$D/statelock" && flock -x 8 || exit 2; '
    'set -- "$1" "$2" $(cat "$D/state.ver" 2>/dev/null); '
    'if [ "${3:-0}" -gt "$1" ] || { [ "${3:-0}" -eq "$1" ] && [ "${4:-0}" -ge "$2" ]; }; then '
    'cat > /dev/null; echo "kept ${3:-0} ${4:-0}"; exit 0; fi; '
    'cat > "$D/state.json.tmp" && mv "$D/state.json.tmp" "$D/state.json" && '
    'echo "$1 $2" > "$D/state.ver.tmp" && mv "$D/state.ver.tmp" "$D/state.ver" || exit 2; '
    'echo "written $1 $2"'
)

# $1 epoch, $2 kind (run, remove ...), then the command itself.
FENCED = (
    _PROLOGUE + 'flock -s 9 || exit 2; ' + _EPOCH +
    'if [ "$cur" != "$1" ]; then echo "refused $1 $cur $2" >> "$D/audit"; '
    'echo "bicycle: fenced: node epoch $cur, actor $1" >&2; exit 97; fi; '
    'echo "accepted $1 $cur $2" >> "$D/audit"; shift 2; exec "$@"'
)


def claim(epoch, holder):
    return ["sh", "-c", CLAIM, "bicycle-claim", str(epoch), holder]


def renew(epoch, holder):
    return ["sh", "-c", RENEW, "bicycle-renew", str(epoch), holder]


def read():
    return ["sh", "-c", READ, "bicycle-read"]


def read_state():
    return ["sh", "-c", READ_STATE, "bicycle-read-state"]


def replicate(epoch, version):
    return ["sh", "-c", REPLICATE, "bicycle-replicate", str(epoch), str(version)]


def fenced(epoch, kind, argv):
    return ["sh", "-c", FENCED, "bicycle-fenced", str(epoch), kind, *argv]


def audit():
    return ["sh", "-c", 'cat "$HOME/.bicycle/audit" 2>/dev/null; exit 0']
