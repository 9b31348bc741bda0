# Shared helpers of the bench/ scripts (sourced, not run).
#
# A private Postfix instance the way internal/oracle starts one: its own
# config directory, spool and log under a scratch directory, no chroot,
# smtpd on 127.0.0.1:PORT only, the pipe(8) transports dropped. Needs
# root (Postfix's master starts as root and runs its daemons as user
# postfix), as the oracle tests do.

set -euo pipefail

die() { echo "bench: $*" >&2; exit 1; }

need() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "$c is not installed (Debian: apt-get install postfix strace)"
	done
}

# free_port prints a TCP port nobody listens on.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# now_s prints the time in seconds with nanoseconds.
now_s() { date +%s.%N; }

# ratio A B prints A/B with two decimals.
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print('%.2f' % (a/b) if b else 'inf')" "$1" "$2"; }

# rate N SECONDS prints N/SECONDS with one decimal.
rate() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }

# pf_setup DIR PORT MAINCF_EXTRA: writes DIR/etc/{main,master}.cf for an
# instance listening on 127.0.0.1:PORT; MAINCF_EXTRA is appended to
# main.cf (later settings win).
pf_setup() {
	local dir=$1 port=$2 extra=$3
	mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
	chmod 755 "$dir" "$dir/etc" "$dir/spool" "$dir/data"
	chown postfix:postfix "$dir/data"
	cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
alias_maps =
alias_database =
$extra
EOF
	# Debian's master.cf without chroot, smtpd on the private port, no
	# other inet services and no pipe(8) transports.
	awk -v port="$port" '
		/^[ \t]*#/ || /^[ \t]*$/ { next }
		/^[ \t]/ { if (!skip) print; next }
		{
			skip = 0
			if (($2 == "inet" && $1 != "smtp") || $1 ~ /^(pickup|maildrop|uucp|ifmail|bsmtp|scalemail-backend|mailman|postscreen|smtpd|dnsblog|tlsproxy|submission|submissions|smtps)$/) { skip = 1; next }
			if ($1 == "smtp" && $2 == "inet") $1 = "127.0.0.1:" port
			$5 = "n"
			print
		}' /etc/postfix/master.cf >"$dir/etc/master.cf"
}

# pf_start DIR: starts the instance and waits for its banner.
pf_start() {
	local dir=$1 port
	port=$(awk '$2 == "inet" { split($1, a, ":"); print a[2] }' "$dir/etc/master.cf")
	postfix -c "$dir/etc" start >"$dir/start.log" 2>&1 || { cat "$dir/start.log" "$dir/maillog" >&2 2>/dev/null; die "postfix start failed"; }
	wait_banner 127.0.0.1 "$port" || { tail -20 "$dir/maillog" >&2; die "no banner from Postfix on $port"; }
}

pf_stop() {
	postfix -c "$1/etc" stop >/dev/null 2>&1 || true
	# The master leaves only after its children; wait for the pid file to go.
	for _ in $(seq 50); do
		[ -e "$1/spool/pid/master.pid" ] && kill -0 "$(tr -d ' ' <"$1/spool/pid/master.pid")" 2>/dev/null || return 0
		sleep 0.1
	done
}

pf_master_pid() { tr -d ' \n' <"$1/spool/pid/master.pid"; }

# wait_banner HOST PORT: waits (up to 20 s) for a 220 greeting.
wait_banner() {
	python3 - "$1" "$2" <<'EOF'
import socket, sys, time
end = time.time() + 20
while time.time() < end:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        line = s.makefile("rb").readline()
        s.sendall(b"QUIT\r\n")
        s.close()
        if line.startswith(b"220"):
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# count_files DIR: regular files under DIR (recursively), 0 if missing.
count_files() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }

# fsyncs STRACE_SUMMARY: the calls of fsync, fdatasync and
# sync_file_range in an "strace -c" summary.
fsyncs() {
	# Columns: % time, seconds, usecs/call, calls, [errors,] syscall.
	awk '$NF ~ /^(fsync|fdatasync|sync_file_range|sync|syncfs)$/ { n += $4 } END { print n + 0 }' "$1"
}

# cpu_ticks PID: the CPU time (user + system, in clock ticks) used so far
# by PID and all its descendants, the reaped ones included (their time is
# in their parents' cutime/cstime). With Postfix's master as PID this is
# the whole mail system: smtpd, cleanup, qmgr and the delivery agents,
# which come and go (max_use) and so cannot be measured one by one.
cpu_ticks() {
	python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
stat = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            s = f.read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17)
    stat[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
kids = {}
for pid, (ppid, _) in stat.items():
    kids.setdefault(ppid, []).append(pid)
total, todo = 0, [root]
while todo:
    p = todo.pop()
    if p in stat:
        total += stat[p][1]
    todo.extend(kids.get(p, []))
print(total)
PY
}

# cpu_ms_per_msg TICKS_BEFORE TICKS_AFTER N
cpu_ms_per_msg() {
	python3 -c "import os,sys; t=os.sysconf('SC_CLK_TCK'); print('%.2f' % ((int(sys.argv[2])-int(sys.argv[1]))*1000.0/t/int(sys.argv[3])))" "$1" "$2" "$3"
}
