#!/usr/bin/env bash
# bench/accept.sh: messages per second ACCEPTED with durable queueing
# (issue 6), in one run, same messages and sessions:
#
#   postkit  examples/mailserver
#   postfix  a private Postfix instance (lib.sh, the oracle's recipe)
#   sink     Postfix's smtp-sink, which writes nothing (the ceiling)
#
# Both MTAs read the SAME main.cf (the mailserver with -config). MODE=hold
# (the default) measures only the accept path: header_checks HOLD every
# message, so it goes from the SMTP session straight into the hold queue,
# durable when the 250 is sent, and no delivery runs; the held messages
# are counted afterwards. MODE=discard instead routes all mail to
# discard(8): the queue manager takes each message out again while the
# next ones arrive (the usual life of a queue file), and the clock still
# stops when smtp-source has its last 250. smtp-source sends N messages of
# SIZE bytes over SESS parallel sessions, one message per connection
# (smtp-source's default). REPS repetitions, the order of the three
# rotating; a fresh queue per repetition.
#
# Then one more run of each MTA under strace -f -c counts fsync, fdatasync
# and sync_file_range calls per message (strace slows the traced calls, so
# those runs are not timed).
#
# Usage: sudo bench/accept.sh       (N=2000 SESS=20 SIZE=4096 REPS=3)
# Needs: root (Postfix), postfix, smtp-source, smtp-sink, strace, go.

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
N=${N:-2000}
SESS=${SESS:-20}
SIZE=${SIZE:-4096}
REPS=${REPS:-3}
MODE=${MODE:-hold}
need postfix smtp-source smtp-sink strace go python3
[ "$(id -u)" = 0 ] || die "run as root: a private Postfix instance needs it"

T=$(mktemp -d /tmp/pkacc.XXXXXX) # short: Postfix's socket paths must fit
chmod 755 "$T"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	pf_stop "$T/pf"
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

echo "building examples/mailserver" >&2
(cd "$here/.." && go build -o "$T/mailserver" ./examples/mailserver)

PF_PORT=$(free_port)
PK_PORT=$(free_port)
SINK_PORT=$(free_port)

# One main.cf for both MTAs. mydestination localhost, the recipient needs
# no user table, every message is held.
pf_setup "$T/pf" "$PF_PORT" "
myhostname = localhost
mydestination = localhost
mynetworks = 127.0.0.0/8
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
$(if [ "$MODE" = hold ]; then echo "header_checks = regexp:$T/pf/etc/hold_checks"; else echo "local_transport = discard"; fi)
"
printf '/^From:/ HOLD\n' >"$T/pf/etc/hold_checks"
pf_start "$T/pf"

smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 256 &
PIDS+=($!)
wait_banner 127.0.0.1 "$SINK_PORT" || die "smtp-sink did not start"

PK_PID=
# Nothing is deleted while the benchmark runs: on an ext4 without a journal
# (this machine's) the kernel's inode allocator skips inodes freed in the
# last ~30 s, so deleting the previous run's files just before a timed run
# makes file creation several times dearer for whoever runs next. Each
# postkit run gets its own data directory, Postfix keeps the held messages
# of earlier runs, and everything goes at exit.
PK_RUN=0
pk_start() { # fresh data directory per run
	PK_RUN=$((PK_RUN + 1))
	PK_DIR="$T/pk$PK_RUN"
	"$T/mailserver" -config "$T/pf/etc" -data "$PK_DIR" -smtp "127.0.0.1:$PK_PORT" -submission "" -submissions "" \
		-log "$T/pk.log" >"$T/pk.out" 2>&1 &
	PK_PID=$!
	PIDS+=("$PK_PID")
	wait_banner 127.0.0.1 "$PK_PORT" || { cat "$T/pk.out" >&2; die "mailserver did not start"; }
}
pk_stop() {
	kill -TERM "$PK_PID"
	wait "$PK_PID" || die "mailserver did not exit 0 on SIGTERM"
}

# send PORT: N messages; prints the elapsed seconds.
send() {
	local t0 t1
	t0=$(now_s)
	smtp-source -s "$SESS" -m "$N" -l "$SIZE" -f bench@example.com -t demo@localhost "127.0.0.1:$1" ||
		die "smtp-source to port $1 failed"
	t1=$(now_s)
	python3 -c "import sys; print('%.3f' % (float(sys.argv[2])-float(sys.argv[1])))" "$t0" "$t1"
}

PF_RUNS=0
declare -A SUM CPU
for s in postkit postfix sink; do SUM[$s]=0 CPU[$s]=0; done
echo "MODE=$MODE N=$N SESS=$SESS SIZE=$SIZE REPS=$REPS"
printf '%-4s %-8s %9s %10s %12s\n' rep system seconds msg/s cpu-ms/msg
for rep in $(seq "$REPS"); do
	order=(postkit postfix sink)
	for _ in $(seq $(((rep - 1) % 3))); do order=("${order[@]:1}" "${order[0]}"); done
	for sys in "${order[@]}"; do
		cpu=-
		case $sys in
		postkit)
			pk_start
			c0=$(cpu_ticks "$PK_PID")
			secs=$(send "$PK_PORT")
			cpu=$(cpu_ms_per_msg "$c0" "$(cpu_ticks "$PK_PID")" "$N")
			held=$(count_files "$PK_DIR/queue/hold")
			pk_stop
			[ "$MODE" != hold ] || [ "$held" = "$N" ] || die "postkit holds $held messages, want $N"
			;;
		postfix)
			PF_RUNS=$((PF_RUNS + 1))
			mpid=$(pf_master_pid "$T/pf")
			c0=$(cpu_ticks "$mpid")
			secs=$(send "$PF_PORT")
			cpu=$(cpu_ms_per_msg "$c0" "$(cpu_ticks "$mpid")" "$N")
			held=$(count_files "$T/pf/spool/hold")
			[ "$MODE" != hold ] || [ "$held" = "$((N * PF_RUNS))" ] || die "Postfix holds $held messages, want $((N * PF_RUNS))"
			;;
		sink) secs=$(send "$SINK_PORT") ;;
		esac
		r=$(rate "$N" "$secs")
		SUM[$sys]=$(python3 -c "import sys; print(float(sys.argv[1])+float(sys.argv[2]))" "${SUM[$sys]}" "$r")
		[ "$cpu" = - ] || CPU[$sys]=$(python3 -c "import sys; print(float(sys.argv[1])+float(sys.argv[2]))" "${CPU[$sys]}" "$cpu")
		printf '%-4s %-8s %9s %10s %12s\n' "$rep" "$sys" "$secs" "$r" "$cpu"
	done
done
mean() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1])/int(sys.argv[2])))" "$1" "$REPS"; }
PK=$(mean "${SUM[postkit]}") PF=$(mean "${SUM[postfix]}") SK=$(mean "${SUM[sink]}")
echo
echo "mean msg/s: postkit $PK, postfix $PF, smtp-sink $SK"
echo "postkit/postfix: $(ratio "$PK" "$PF")x (target >= 3x)"
echo "postkit/smtp-sink: $(ratio "$PK" "$SK") (target >= 0.50)"
echo "mean CPU ms per message: postkit $(mean "${CPU[postkit]}"), postfix $(mean "${CPU[postfix]}"); postfix/postkit $(ratio "${CPU[postfix]}" "${CPU[postkit]}")x"

# fsyncs per message, one traced run each.
trace() { # trace OUTFILE PID...
	local out=$1
	shift
	local args=()
	for p in "$@"; do args+=(-p "$p"); done
	strace -f -c -o "$out" -e trace=fsync,fdatasync,sync_file_range,sync,syncfs "${args[@]}" 2>/dev/null &
	STRACE_PID=$!
	sleep 1
}
untrace() {
	kill -INT "$STRACE_PID"
	wait "$STRACE_PID" || true
}
pk_start
trace "$T/pk.strace" "$PK_PID"
send "$PK_PORT" >/dev/null
untrace
pk_stop
postsuper -c "$T/pf/etc" -d ALL >/dev/null 2>&1 || true
mpid=$(pf_master_pid "$T/pf")
# shellcheck disable=SC2046
trace "$T/pf.strace" "$mpid" $(pgrep -P "$mpid")
send "$PF_PORT" >/dev/null
untrace
pkf=$(fsyncs "$T/pk.strace")
pff=$(fsyncs "$T/pf.strace")
echo "fsyncs per message: postkit $(ratio "$pkf" "$N") ($pkf calls), postfix $(ratio "$pff" "$N") ($pff calls)"
