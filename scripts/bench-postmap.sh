#!/usr/bin/env bash
# bench-postmap.sh: whole-process timings of "postkit postmap" against
# Postfix's postmap on the same files and keys, in the same run.
#
#   scripts/bench-postmap.sh            # all benchmarks
#   RUNS=5 scripts/bench-postmap.sh     # fewer runs per command
#   SKIP_SLOW=1 scripts/bench-postmap.sh  # without regexp (Postfix: minutes)
#
# Needs Go and Postfix (postmap, postfix-cdb). Uses hyperfine when it is
# installed (apt-get install -y hyperfine), else times repeated runs itself.
# Prints one line per benchmark: the mean time of each command and the
# ratio postmap/postkit (above 1 means postkit is faster).
set -euo pipefail

RUNS=${RUNS:-10}
WARMUP=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-postmap.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"

POSTMAP=$(command -v postmap || echo /usr/sbin/postmap)
[ -x "$POSTMAP" ] || { echo "postmap (Postfix) is not installed" >&2; exit 1; }

echo "building postkit..." >&2
(cd "$ROOT" && go build -o "$WORK/postkit" ./cmd/postkit)
KIT="$WORK/postkit postmap"

CONF="$WORK/conf"
mkdir -p "$CONF"
printf 'compatibility_level = 3.6\n' >"$CONF/main.cf"
: >"$CONF/master.cf"
chmod -R a+rX "$CONF"

echo "making data in $WORK..." >&2
# hash: 100,000 entries; 100,000 keys, half present, in mixed case.
awk 'BEGIN { srand(1); for (i = 0; i < 100000; i++)
	printf "user%d.%x@example%d.com\tvalue-%d %x\n", i, int(rand()*1e6), i % 97, i, int(rand()*1e9) }' >"$WORK/hash"
awk -F'\t' 'BEGIN { srand(2) } { if (rand() < 0.5) print toupper($1); else print "miss" NR "@example.org" }' "$WORK/hash" >"$WORK/hash.keys"
# cidr: 10,000 rules (/16 to /28 with host bits clear, a few IPv6);
# 10,000 random IPv4 keys.
awk 'BEGIN { srand(3); for (i = 0; i < 10000; i++) {
	bits = 16 + int(rand() * 13); ip = int(rand() * 4294967296);
	span = 2 ^ (32 - bits); ip = ip - (ip % span);
	printf "%d.%d.%d.%d/%d\trule-%d\n", int(ip / 16777216), int(ip / 65536) % 256, int(ip / 256) % 256, ip % 256, bits, i
	if (i % 50 == 0) printf "2001:db8:%x::/48\tv6-%d\n", int(rand() * 65536), i } }' >"$WORK/cidr"
awk 'BEGIN { srand(4); for (i = 0; i < 10000; i++)
	printf "%d.%d.%d.%d\n", int(rand()*256), int(rand()*256), int(rand()*256), int(rand()*256) }' >"$WORK/cidr.keys"
# regexp: 10,000 rules of four shapes; 10,000 keys, a few of which match
# late rules.
awk 'BEGIN { srand(5); for (i = 0; i < 10000; i++) { s = i % 4;
	if (s == 0) printf "/^user%d@/\tprefix-%d\n", i, i;
	else if (s == 1) printf "/@host%d\\.example\\.com$/\tsuffix-%d\n", i, i;
	else if (s == 2) printf "/^([a-z]+)-%d[.-](.*)$/\tgroups-%d $2 $1\n", i, i;
	else printf "/list%d@EXAMPLE/i\tcase-%d\n", i, i } }' >"$WORK/regexp"
awk 'BEGIN { srand(6); for (i = 0; i < 10000; i++) { r = int(rand() * 10000);
	if (i % 10 == 0) printf "user%d@example.com\n", r; else printf "someone%d@host%d.example.net\n", i, r } }' >"$WORK/regexp.keys"
# build: 1,000,000 lines.
awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "key%d@example%d.com\tvalue %d\n", i, i % 1000, i }' >"$WORK/big"
cp "$WORK/big" "$WORK/big-kit"

# Postfix's indexed files for the query benchmarks.
"$POSTMAP" -c "$CONF" "hash:$WORK/hash"

# Same answers first: a benchmark of different work is worthless.
# (regexp is checked on its first 1,000 keys: Postfix is slow at it.)
head -1000 "$WORK/regexp.keys" >"$WORK/regexp.keys1k"
for t in "hash:$WORK/hash:hash.keys" "cidr:$WORK/cidr:cidr.keys" "regexp:$WORK/regexp:regexp.keys1k"; do
	spec=${t%:*}
	keys=$WORK/${t##*:}
	if ! cmp -s <($KIT -c "$CONF" -q - "$spec" <"$keys" 2>/dev/null) <("$POSTMAP" -c "$CONF" -q - "$spec" <"$keys" 2>/dev/null); then
		echo "WARNING: postkit and postmap answer differently for $spec" >&2
	fi
done

RESULTS="$WORK/results.txt"
: >"$RESULTS"

# bench NAME KITCMD PFCMD: times both, prints means and the ratio.
bench() {
	local name=$1 kit=$2 pf=$3
	local kmean pmean
	if command -v hyperfine >/dev/null; then
		hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/h.json" \
			-n postkit "$kit" -n postmap "$pf" >/dev/null 2>&1 ||
			hyperfine --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/h.json" \
				-n postkit "$kit" -n postmap "$pf" >/dev/null
		kmean=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.4f" % r[0]["mean"])' "$WORK/h.json")
		pmean=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.4f" % r[1]["mean"])' "$WORK/h.json")
		# CPU time (user + system) is steadier than wall time on a shared
		# machine: print its ratio too.
		kcpu=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.4f" % (r[0]["user"] + r[0]["system"]))' "$WORK/h.json")
		pcpu=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.4f" % (r[1]["user"] + r[1]["system"]))' "$WORK/h.json")
	else
		kmean=$(timeit "$kit")
		pmean=$(timeit "$pf")
		kcpu=$kmean pcpu=$pmean
	fi
	local ratio cratio
	ratio=$(awk -v k="$kmean" -v p="$pmean" 'BEGIN { printf "%.2f", p / k }')
	cratio=$(awk -v k="$kcpu" -v p="$pcpu" 'BEGIN { printf "%.2f", p / k }')
	printf '%-34s postkit %8.3fs  postmap %8.3fs  postmap/postkit %6sx  (cpu %.3fs / %.3fs = %sx)\n' \
		"$name" "$kmean" "$pmean" "$ratio" "$kcpu" "$pcpu" "$cratio" | tee -a "$RESULTS"
}

# timeit CMD: mean wall time of RUNS runs (after one warm-up run).
timeit() {
	[ "$WARMUP" = 0 ] || bash -c "$1" >/dev/null 2>&1 || true
	local start end
	start=$(date +%s.%N)
	for ((i = 0; i < RUNS; i++)); do bash -c "$1" >/dev/null 2>&1 || true; done
	end=$(date +%s.%N)
	awk -v s="$start" -v e="$end" -v n="$RUNS" 'BEGIN { printf "%.4f", (e - s) / n }'
}

q() { echo "$1 -c $CONF -q - $2 < $3 > /dev/null"; }

bench "query hash 100k keys" "bash -c '$(q "$KIT" "hash:$WORK/hash" "$WORK/hash.keys")'" "bash -c '$(q "$POSTMAP" "hash:$WORK/hash" "$WORK/hash.keys")'"
bench "query cidr 10k rules, 10k keys" "bash -c '$(q "$KIT" "cidr:$WORK/cidr" "$WORK/cidr.keys")'" "bash -c '$(q "$POSTMAP" "cidr:$WORK/cidr" "$WORK/cidr.keys")'"
# Postfix tries every rule on every key: about a minute a run here.
# SKIP_SLOW=1 leaves it out.
RUNS_ALL=$RUNS
if [ -z "${SKIP_SLOW:-}" ]; then
	RUNS=2 WARMUP=0
	bench "query regexp 10k rules, 10k keys" "bash -c '$(q "$KIT" "regexp:$WORK/regexp" "$WORK/regexp.keys")'" "bash -c '$(q "$POSTMAP" "regexp:$WORK/regexp" "$WORK/regexp.keys")'"
fi
RUNS=$(( RUNS_ALL > 5 ? 5 : RUNS_ALL )) WARMUP=1
bench "build cdb 1M lines" "$KIT -c $CONF cdb:$WORK/big-kit" "$POSTMAP -c $CONF cdb:$WORK/big"
bench "build hash 1M lines (postkit: check)" "$KIT -c $CONF hash:$WORK/big-kit" "$POSTMAP -c $CONF hash:$WORK/big"

echo
echo "machine: $(nproc) cores, $(awk -F: '/model name/ { print $2; exit }' /proc/cpuinfo | sed 's/^ *//'), $(date -u +%Y-%m-%d)"
