package main

// postkit postsuper: Postfix's postsuper(1) -d, -h, -H and -r, each with
// a queue ID, ALL (upper case only) or "-" (IDs from standard input, one
// per line), and optional queue names as operands. With a server running
// the operations go through its control socket, so its scheduler sees
// them at once (a deleted active message stays deleted, a held one stays
// held); with none, the command opens the queue itself when its lock is
// free. Like Postfix's, it reports on standard error how many messages
// each operation affected ("postsuper: Deleted: 2 messages"), warns
// about IDs that cannot be queue IDs, and exits 1 on fatal errors.
//
// -e and -f mark messages for forced expiry (-f also releases held
// ones); the scheduler returns them to the sender after their next
// attempt, as Postfix's does. Not built: -p, -s and -S (postkit's queue
// repairs itself when it is opened).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

const psUsage = "usage: postsuper [-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]"

// psOps are postsuper's operations in the order they are done and
// reported, with the words of the report.
var psOps = []struct {
	flag    byte
	op      queue.AdminOp
	verb    string
	logWord string
}{
	{'r', queue.AdminRequeue, "Requeued", "requeued"},
	{'d', queue.AdminDelete, "Deleted", "removed"},
	{'e', queue.AdminExpire, "Force-expired", "expired"},
	{'h', queue.AdminHold, "Placed on hold", "placed on hold"},
	{'H', queue.AdminRelease, "Released from hold", "released from hold"},
}

// psIDOK is Postfix's check of a queue ID's characters (mail_queue_id_ok):
// letters and digits only.
func psIDOK(id string) bool {
	if id == "" || len(id) > 100 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// psBatch is a run of consecutive options of one operation: its IDs as
// given, or ALL.
type psBatch struct {
	op    int  // index in psOps
	free  bool // -f: expire, then release from hold
	named []string
	all   bool
}

func psOpIndex(c byte) int {
	for i, p := range psOps {
		if p.flag == c {
			return i
		}
	}
	return -1
}

func postsuperMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const prog = "postsuper"
	const exFatal = 1
	fail := func(err error) int { return qcFail(prog, stderr, err, exFatal) }
	warn := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", prog, fmt.Sprintf(format, a...))
	}
	opts, operands, err := qcGetopt(prog, "c:d:e:f:h:H:pr:sSv", args, stderr)
	if err != nil {
		return fail(qcFatalf(exFatal, psUsage))
	}
	configDir := ""
	var batches []*psBatch
	given := make([]bool, len(psOps))
	var stdinIDs []string
	stdinRead := false
	for _, o := range opts {
		switch o.c {
		case 'c':
			configDir = o.arg
		case 'v':
		case 'p', 's', 'S':
			return fail(qcFatalf(exFatal, "-%c is not built in postkit's postsuper", o.c))
		default:
			free := o.c == 'f'
			i := psOpIndex(o.c)
			if free {
				i = psOpIndex('e')
				given[psOpIndex('H')] = true
			}
			given[i] = true
			// Consecutive IDs for one operation go in one request; ALL
			// is a request of its own.
			var b *psBatch
			if n := len(batches); n > 0 && batches[n-1].op == i && batches[n-1].free == free && !batches[n-1].all && o.arg != "ALL" {
				b = batches[n-1]
			} else {
				b = &psBatch{op: i, free: free}
				batches = append(batches, b)
			}
			switch o.arg {
			case "ALL":
				b.all = true
			case "-":
				if !stdinRead {
					stdinRead = true
					sc := bufio.NewScanner(stdin)
					sc.Buffer(make([]byte, 4096), 1<<20)
					for sc.Scan() {
						if id := strings.TrimSpace(sc.Text()); id != "" {
							stdinIDs = append(stdinIDs, id)
						}
					}
					if err := sc.Err(); err != nil {
						return fail(fmt.Errorf("reading queue IDs from standard input: %w", err))
					}
				}
				b.named = append(b.named, stdinIDs...)
			default:
				b.named = append(b.named, o.arg)
			}
		}
	}
	var states []queue.State
	for _, a := range operands {
		s := queue.State(a)
		ok := false
		for _, t := range queue.States {
			ok = ok || s == t
		}
		if !ok {
			return fail(qcFatalf(exFatal, "invalid directory name: %s", a))
		}
		states = append(states, s)
	}
	if len(batches) == 0 {
		return exOK
	}
	qdir, err := qcQueueDir(configDir)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	c := &control.Client{Path: control.SocketPath(qdir), Warn: func(s string) { warn("%s", s) }}
	var direct *queue.Queue
	defer func() {
		if direct != nil {
			direct.Close()
		}
	}()
	// The operations in command-line order, as Postfix does them, each
	// message named (not ALL) reported by ID; then the counts, in
	// Postfix's fixed order.
	admin := func(op queue.AdminOp, ids []string) ([]string, error) {
		if direct != nil {
			return direct.Admin(ctx, op, ids, states)
		}
		done, err := c.Admin(ctx, op, ids, states...)
		if errors.Is(err, control.ErrNotRunning) {
			if direct, err = qcOpenDirect(qdir); err == nil {
				return direct.Admin(ctx, op, ids, states)
			} else if errors.Is(err, errNoQueue) {
				return nil, nil // no queue yet: no messages
			}
		}
		return done, err
	}
	counts := make([]int, len(psOps))
	for _, b := range batches {
		p := psOps[b.op]
		var ids []string // nil: ALL
		if !b.all {
			ids = []string{}
			for _, id := range b.named {
				// "ALL" from standard input is a queue ID to Postfix,
				// one that names no message; sent on, it would mean
				// every message.
				if psIDOK(id) && id != "ALL" {
					ids = append(ids, id)
				}
			}
		}
		done, err := admin(p.op, ids)
		if err != nil {
			return fail(err)
		}
		counts[b.op] += len(done)
		var released []string
		if b.free {
			// -f also releases: held messages only, whatever queues
			// were named.
			if released, err = admin(queue.AdminRelease, ids); err != nil {
				return fail(err)
			}
			counts[psOpIndex('H')] += len(released)
		}
		acted := map[string][]string{}
		for _, id := range done {
			acted[id] = append(acted[id], p.logWord)
		}
		for _, id := range released {
			acted[id] = append(acted[id], "released from hold")
		}
		for _, id := range b.named {
			if !psIDOK(id) {
				warn("invalid mail queue id: %s", id)
				continue
			}
			for _, w := range acted[id] {
				fmt.Fprintf(stderr, "%s: %s: %s\n", prog, id, w)
			}
			delete(acted, id)
		}
	}
	for i, p := range psOps {
		if !given[i] {
			continue
		}
		plural := "s"
		if counts[i] == 1 {
			plural = ""
		}
		fmt.Fprintf(stderr, "%s: %s: %d message%s\n", prog, p.verb, counts[i], plural)
	}
	return exOK
}
