#!/usr/bin/env bash
# bench/deliver.sh: SMTP in to mailbox, timed until the last message has
# landed (issue 7), in one run, same messages and sessions:
#
#   postkit  examples/mailserver -config DIR
#   postfix  a private Postfix instance (lib.sh)
#
# Both read the same main.cf (only virtual_mailbox_base differs): the
# domain localhost is a virtual(8) mailbox domain, demo@localhost's
# mailbox is demo/Maildir/ (FORMAT=maildir) or demo/mbox (FORMAT=mbox),
# owned by nobody. smtp-source sends N messages of SIZE bytes over SESS
# parallel sessions; the clock runs from the first connection until the
# Maildir holds N files (or the mbox N "From " lines). REPS repetitions,
# the order alternating, fresh mailboxes and queues each time.
#
# With FSYNCS=1 (the default) one more run of each, N=200 messages,
# counts fsync/fdatasync calls per delivered message under strace -f -c
# (not timed).
#
# Usage: sudo bench/deliver.sh       (N=1000 SESS=10 SIZE=4096 REPS=3 FORMATS="maildir mbox")
# Needs: root (Postfix), postfix, smtp-source, go.

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
N=${N:-1000}
SESS=${SESS:-10}
SIZE=${SIZE:-4096}
REPS=${REPS:-3}
FORMATS=${FORMATS:-maildir mbox}
FSYNCS=${FSYNCS:-1}
need postfix smtp-source go python3 strace
[ "$(id -u)" = 0 ] || die "run as root: a private Postfix instance needs it"

T=$(mktemp -d /tmp/pkdlv.XXXXXX)
chmod 755 "$T"
PK_PID=
cleanup() {
	[ -n "$PK_PID" ] && kill "$PK_PID" 2>/dev/null || true
	pf_stop "$T/pf"
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

echo "building examples/mailserver" >&2
(cd "$here/.." && go build -o "$T/mailserver" ./examples/mailserver)
PF_PORT=$(free_port)
PK_PORT=$(free_port)

maincf() { # maincf BASE FORMAT
	local box=demo/Maildir/
	[ "$2" = mbox ] && box=demo/mbox
	printf 'demo@localhost %s\n' "$box" >"$T/vmailbox-$2"
	cat <<EOF
compatibility_level = 3.6
alias_maps =
alias_database =
myhostname = localhost
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = localhost
virtual_mailbox_maps = texthash:$T/vmailbox-$2
virtual_mailbox_base = $1
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
EOF
}

# landed BASE FORMAT: how many messages the mailbox holds.
landed() {
	if [ "$2" = maildir ]; then
		count_files "$1/demo/Maildir/new"
	else
		[ -f "$1/demo/mbox" ] && grep -c '^From ' "$1/demo/mbox" || echo 0
	fi
}

# timed PORT BASE FORMAT: sends N messages, waits for all of them in the
# mailbox (at most 10 minutes) and prints the seconds.
timed() {
	local t0 t1 n
	t0=$(now_s)
	smtp-source -s "$SESS" -m "$N" -l "$SIZE" -f bench@example.com -t demo@localhost "127.0.0.1:$1" ||
		die "smtp-source to port $1 failed"
	for _ in $(seq 12000); do
		n=$(landed "$2" "$3")
		[ "$n" -ge "$N" ] && break
		sleep 0.05
	done
	t1=$(now_s)
	[ "$n" -ge "$N" ] || die "only $n of $N messages landed in $2"
	python3 -c "import sys; print('%.3f' % (float(sys.argv[2])-float(sys.argv[1])))" "$t0" "$t1"
}

# fresh_base DIR: an empty mailbox base with demo/ (virtual(8) makes
# Maildirs but not the directory an mbox file goes in).
# Old directories are moved aside, not deleted, while the benchmark runs:
# on an ext4 without a journal (this machine's) creates right after a mass
# deletion are dear (the inode allocator skips recently freed inodes), which
# would charge whoever runs next. Everything goes at exit with $T.
aside() {
	mkdir -p "$T/aside"
	[ ! -e "$1" ] || mv "$1" "$(mktemp -u "$T/aside/x.XXXXXX")"
}
fresh_base() {
	aside "$1"
	mkdir -p "$1/demo"
	chown 65534:65534 "$1" "$1/demo"
}

echo "N=$N SESS=$SESS SIZE=$SIZE REPS=$REPS"
for fmt in $FORMATS; do
	pf_stop "$T/pf"
	aside "$T/pf"
	pf_setup "$T/pf" "$PF_PORT" "$(maincf "$T/pfmail" "$fmt")"
	mkdir -p "$T/pk-etc"
	maincf "$T/pkmail" "$fmt" >"$T/pk-etc/main.cf"
	cp "$T/pf/etc/master.cf" "$T/pk-etc/master.cf"
	fresh_base "$T/pfmail"
	pf_start "$T/pf"
	pksum=0 pfsum=0
	printf '%-7s %-4s %-8s %9s %10s\n' format rep system seconds msg/s
	for rep in $(seq "$REPS"); do
		order=(postkit postfix)
		[ $((rep % 2)) = 0 ] && order=(postfix postkit)
		for sys in "${order[@]}"; do
			if [ "$sys" = postkit ]; then
				fresh_base "$T/pkmail"
				aside "$T/pkdata"
				"$T/mailserver" -config "$T/pk-etc" -data "$T/pkdata" -smtp "127.0.0.1:$PK_PORT" -submission "" \
					-submissions "" -log "$T/pk.log" >"$T/pk.out" 2>&1 &
				PK_PID=$!
				wait_banner 127.0.0.1 "$PK_PORT" || { cat "$T/pk.out" >&2; die "mailserver did not start"; }
				secs=$(timed "$PK_PORT" "$T/pkmail" "$fmt")
				kill -TERM "$PK_PID"
				wait "$PK_PID" || die "mailserver did not exit 0"
				PK_PID=
				r=$(rate "$N" "$secs")
				pksum=$(python3 -c "import sys; print(float(sys.argv[1])+float(sys.argv[2]))" "$pksum" "$r")
			else
				fresh_base "$T/pfmail"
				secs=$(timed "$PF_PORT" "$T/pfmail" "$fmt")
				r=$(rate "$N" "$secs")
				pfsum=$(python3 -c "import sys; print(float(sys.argv[1])+float(sys.argv[2]))" "$pfsum" "$r")
			fi
			printf '%-7s %-4s %-8s %9s %10s\n' "$fmt" "$rep" "$sys" "$secs" "$r"
		done
	done
	if [ "$FSYNCS" = 1 ]; then
		n0=$N
		N=200
		fresh_base "$T/pkmail"
		aside "$T/pkdata"
		"$T/mailserver" -config "$T/pk-etc" -data "$T/pkdata" -smtp "127.0.0.1:$PK_PORT" -submission "" \
			-submissions "" -log "$T/pk.log" >"$T/pk.out" 2>&1 &
		PK_PID=$!
		wait_banner 127.0.0.1 "$PK_PORT" || die "mailserver did not start"
		strace -f -c -o "$T/pk.strace" -e trace=fsync,fdatasync,sync_file_range -p "$PK_PID" 2>/dev/null &
		st=$!
		sleep 1
		timed "$PK_PORT" "$T/pkmail" "$fmt" >/dev/null
		kill -INT "$st"
		wait "$st" || true
		kill -TERM "$PK_PID"
		wait "$PK_PID" || true
		PK_PID=
		fresh_base "$T/pfmail"
		mpid=$(pf_master_pid "$T/pf")
		args=(-p "$mpid")
		for c in $(pgrep -P "$mpid"); do args+=(-p "$c"); done
		strace -f -c -o "$T/pf.strace" -e trace=fsync,fdatasync,sync_file_range "${args[@]}" 2>/dev/null &
		st=$!
		sleep 1
		timed "$PF_PORT" "$T/pfmail" "$fmt" >/dev/null
		sleep 1 # qmgr's last removals
		kill -INT "$st"
		wait "$st" || true
		echo "$fmt: fsyncs per delivered message: postkit $(ratio "$(fsyncs "$T/pk.strace")" "$N"), postfix $(ratio "$(fsyncs "$T/pf.strace")" "$N")"
		N=$n0
	fi
	echo "$fmt: mean msg/s postkit $(rate "$pksum" "$REPS"), postfix $(rate "$pfsum" "$REPS"), postkit/postfix $(ratio "$pksum" "$pfsum")x (target >= 3x)"
	echo
done
