# shellcheck shell=bash
# Sourceable helpers that run reference authoritative servers (Knot, NSD) on loopback, in a
# directory of the caller's, on an unprivileged port, in the foreground of a background job.
#
#   pid=$(knot_primary   DIR PORT ZONEFILE ORIGIN)
#   pid=$(nsd_primary    DIR PORT ZONEFILE ORIGIN)
#   stop_pid PID [GRACE_S]                 # TERM, then KILL after GRACE_S (default 5)
#   dns_stop_all                           # stop_pid every server listed in $DNS_PIDFILE
#   dns_soa_serial HOST PORT ORIGIN        # prints the SOA serial, or nothing
#   dns_free_port [HINT]                   # prints a port free for UDP and TCP on 127.0.0.1
#
# The start functions return once the server answers ORIGIN SOA, at most DNS_WAIT_S seconds (default 20); on failure they stop the server,
# print its log to stderr and return 1. They print only the pid, so call them as pid=$(...): the
# server outlives that subshell and is not the caller's child. For cleanup, set DNS_PIDFILE to a
# file and call dns_stop_all from an EXIT trap: each server's pid is appended there as soon as
# it is spawned, so a server whose start was interrupted (a signal defers the trap until the
# $(...) returns, after which the assignment never happens) is stopped too.
# The config is DIR/knot.conf or DIR/nsd.conf, the log DIR/*.log; the zone file is copied
# into DIR. Knot keeps its rundir (control socket), database and journal (journal-content: none)
# in DIR and never writes the zone file back; NSD runs without chroot, user change, database or
# remote control, with its pidfile, xfrd state and zone list in DIR, and with response rate
# limiting off (Debian builds NSD with RRL at 200 qps per source, and every query here comes
# from 127.0.0.1: under load it drops and truncates answers).
# Extra lines for the server: section: KNOT_SERVER_EXTRA, NSD_SERVER_EXTRA (e.g. "udp-workers: 2"
# or "server-count: 2"), one option a line, without indentation.

DNS_WAIT_S=${DNS_WAIT_S:-20}
KNOTD=${KNOTD:-$(command -v knotd || echo /usr/sbin/knotd)}
NSD=${NSD:-$(command -v nsd || echo /usr/sbin/nsd)}
NSD_CHECKCONF=${NSD_CHECKCONF:-$(command -v nsd-checkconf || echo /usr/sbin/nsd-checkconf)}
KDIG=${KDIG:-$(command -v kdig || echo /usr/bin/kdig)}

dns_soa_serial() { # HOST PORT ORIGIN
  "$KDIG" @"$1" -p "$2" +norec +time=1 +retry=0 +short "$3" SOA 2>/dev/null |
    awk 'NF >= 7 && $3 ~ /^[0-9]+$/ { print $3; exit }'
}

dns_free_port() { # [HINT]: the first port from HINT (default random 20000..39999) free on 127.0.0.1
  local p=${1:-$((20000 + RANDOM % 20000))} i
  for ((i = 0; i < 200; i++, p++)); do
    if python3 - "$p" 2>/dev/null <<'PY'; then
import socket, sys
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.close()
PY
      echo "$p"
      return 0
    fi
  done
  echo "dns_free_port: no free port near $1" >&2
  return 1
}

_dns_register() { # PID
  [[ -z ${DNS_PIDFILE:-} ]] || echo "$1" >>"$DNS_PIDFILE"
}

dns_stop_all() {
  local p
  [[ -n ${DNS_PIDFILE:-} && -s $DNS_PIDFILE ]] || return 0
  while read -r p; do stop_pid "$p" 3; done <"$DNS_PIDFILE"
  : >"$DNS_PIDFILE"
}

_dns_alive() { # PID: running and not a zombie
  kill -0 "$1" 2>/dev/null || return 1
  [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

stop_pid() { # PID [GRACE_S]
  local pid=$1 grace=${2:-5} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    _dns_alive "$pid" || break
    sleep 0.1
  done
  if _dns_alive "$pid"; then
    echo "stop_pid: $pid ignored SIGTERM for ${grace}s, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true # reaps it if it is the caller's child
  return 0
}

# Waits until 127.0.0.1:PORT serves ORIGIN SOA while PID lives; on failure stops PID.
_dns_wait_soa() { # PID PORT ORIGIN LOG WHAT
  local pid=$1 port=$2 origin=$3 log=$4 what=$5 deadline
  deadline=$((SECONDS + DNS_WAIT_S))
  while ((SECONDS <= deadline)); do
    if ! _dns_alive "$pid"; then
      echo "$what: exited before serving $origin; log $log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    [[ -n $(dns_soa_serial 127.0.0.1 "$port" "$origin") ]] && return 0
    sleep 0.2
  done
  echo "$what: $origin not served on 127.0.0.1@$port within ${DNS_WAIT_S}s; log $log:" >&2
  tail -n 30 "$log" >&2
  stop_pid "$pid" 2
  return 1
}

_knot_server_conf() { # DIR PORT
  local extra=""
  [[ -n ${KNOT_SERVER_EXTRA:-} ]] && extra=$(sed 's/^/    /' <<<"$KNOT_SERVER_EXTRA")
  cat <<EOF
server:
    rundir: "$1"
    listen: 127.0.0.1@$2
$extra
database:
    storage: "$1"
log:
  - target: stderr
    any: ${KNOT_LOG_LEVEL:-warning}
EOF
}

_knot_start() { # DIR -> pid on stdout
  "$KNOTD" -c "$1/knot.conf" </dev/null >>"$1/knot.log" 2>&1 &
  _dns_register $!
  echo $!
}

knot_primary() { # DIR PORT ZONEFILE ORIGIN
  local dir=$1 port=$2 zonefile=$3 origin=$4 pid
  [[ $origin == *. ]] || origin="$origin."
  mkdir -p "$dir" && cp "$zonefile" "$dir/zone.db" || return 1
  {
    _knot_server_conf "$dir" "$port"
    cat <<EOF
zone:
  - domain: $origin
    storage: "$dir"
    file: "zone.db"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
EOF
  } >"$dir/knot.conf"
  pid=$(_knot_start "$dir")
  _dns_wait_soa "$pid" "$port" "$origin" "$dir/knot.log" "knot_primary" || return 1
  echo "$pid"
}

nsd_primary() { # DIR PORT ZONEFILE ORIGIN
  local dir=$1 port=$2 zonefile=$3 origin=$4 pid extra=""
  [[ $origin == *. ]] || origin="$origin."
  mkdir -p "$dir" && cp "$zonefile" "$dir/zone.db" || return 1
  [[ -n ${NSD_SERVER_EXTRA:-} ]] && extra=$(sed 's/^/    /' <<<"$NSD_SERVER_EXTRA")
  cat >"$dir/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$port
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "$dir"
    database: ""
    pidfile: "$dir/nsd.pid"
    xfrdfile: "$dir/xfrd.state"
    xfrdir: "$dir"
    zonelistfile: "$dir/zone.list"
    logfile: "$dir/nsd.log"
    verbosity: ${NSD_VERBOSITY:-1}
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
$extra
remote-control:
    control-enable: no
zone:
    name: "$origin"
    zonefile: "zone.db"
EOF
  if ! "$NSD_CHECKCONF" "$dir/nsd.conf" >"$dir/nsd-checkconf.log" 2>&1; then
    echo "nsd_primary: nsd-checkconf rejects $dir/nsd.conf:" >&2
    cat "$dir/nsd-checkconf.log" >&2
    return 1
  fi
  "$NSD" -d -c "$dir/nsd.conf" </dev/null >>"$dir/nsd.log" 2>&1 &
  pid=$!
  _dns_register "$pid"
  _dns_wait_soa "$pid" "$port" "$origin" "$dir/nsd.log" "nsd_primary" || return 1
  echo "$pid"
}
