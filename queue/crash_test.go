package queue

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "POSTKIT_QUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild commits messages from several goroutines until it is killed,
// and after each operation returns prints a line saying what is now
// durable: "C id n sha256" for a commit, then per the plan of message n
// "M id" (recipient 0 marked delivered), "A id" (moved to active),
// "D id" (deferred), "R id" (removed).
func crashChild(dir string) {
	q, err := Open(dir, Options{Logger: quiet, NoGroupCommit: os.Getenv(crashChildEnv+"_NOGROUP") != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", a...) // one write: a whole line
		mu.Unlock()
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	ctx := context.Background()
	var next struct {
		sync.Mutex
		n int
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
			for {
				next.Lock()
				n := next.n
				next.n++
				next.Unlock()
				content := crashContent(rng, n)
				f, err := q.Create(ctx, time.Time{})
				if err != nil {
					fail(err)
				}
				for c := content; len(c) > 0; {
					k := min(len(c), 1+rng.IntN(5000))
					if _, err := f.Write([]byte(c[:k])); err != nil {
						fail(err)
					}
					c = c[k:]
				}
				if err := f.Commit(ctx, testEnvelope(2)); err != nil {
					fail(err)
				}
				id := f.ID()
				say("C %s %d %s", id, n, digest(content))
				for _, op := range crashPlan(n) {
					switch op {
					case 'M':
						err = q.MarkRecipients(ctx, id, []Status{{Rcpt: 0, Outcome: Delivered, DSN: "2.0.0"}})
					case 'A':
						err = q.Move(ctx, id, Active)
					case 'D':
						err = q.Defer(ctx, id, time.Now().Add(time.Hour))
					case 'R':
						err = q.Remove(ctx, id)
					}
					if err != nil {
						fail(err)
					}
					say("%c %s", op, id)
				}
			}
		})
	}
	wg.Wait()
}

func crashContent(rng *rand.Rand, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: message %d\r\n\r\n", n)
	lines := rng.IntN(300)
	for range lines {
		fmt.Fprintf(&b, "%x\r\n", rng.Uint64())
	}
	return b.String()
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// crashPlan is what the child does to message n after committing it.
func crashPlan(n int) string {
	var plan string
	if n%3 == 0 {
		plan += "M"
	}
	if n%4 == 0 {
		plan += "A"
	}
	if n%5 == 0 {
		plan += "D"
	}
	if n%7 == 0 {
		plan += "R"
	}
	return plan
}

// crashExpect is what the parent knows of one message.
type crashExpect struct {
	n      int
	sum    string
	done   string // the acknowledged operations, in plan order
	marked bool
}

// The durability test: a child process commits messages from several
// goroutines and is killed with SIGKILL at a random moment, many times;
// each time, Open must find every acknowledged message whole and in the
// state its last acknowledged operation left it (or the next one, which
// may have been under way), nothing corrupt and nothing unfinished left.
func TestCrashRecovery(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	dir := t.TempDir()
	expect := map[string]*crashExpect{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	total := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		if round%5 == 4 {
			cmd.Env = append(cmd.Env, crashChildEnv+"_NOGROUP=1")
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			r := bufio.NewReader(out)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return // a line cut by the kill is not an acknowledgement
				}
				lines <- strings.TrimSuffix(l, "\n")
			}
		}()
		// Kill once the child is under way, at a random moment.
		first := <-lines
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-readDone
		cmd.Wait()
		if strings.Contains(stderr.String(), "queue") {
			t.Fatalf("round %d: the child failed: %s", round, stderr.String())
		}
		close(lines)
		acked := []string{first}
		for l := range lines {
			acked = append(acked, l)
		}
		for _, l := range acked {
			f := strings.Fields(l)
			switch {
			case len(f) == 4 && f[0] == "C":
				n, _ := strconv.Atoi(f[2])
				expect[f[1]] = &crashExpect{n: n, sum: f[3]}
				total++
			case len(f) == 2 && expect[f[1]] != nil:
				expect[f[1]].done += f[0]
			default:
				t.Fatalf("round %d: bad line %q", round, l)
			}
		}
		checkCrashQueue(t, round, dir, expect)
	}
	t.Logf("%d rounds, %d messages acknowledged, all recovered", rounds, total)
}

func checkCrashQueue(t *testing.T, round int, dir string, expect map[string]*crashExpect) {
	t.Helper()
	q, err := Open(dir, Options{Logger: quiet})
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	defer q.Close()
	if r := q.Recovery(); len(r.Replayed) > 0 {
		t.Logf("round %d: replayed %v", round, r.Replayed)
	}
	if r := q.Recovery(); len(r.Corrupt) > 0 {
		t.Fatalf("round %d: corrupt after a kill: %v", round, r.Corrupt)
	}
	for _, s := range States {
		ents, _ := os.ReadDir(filepath.Join(dir, string(s)))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tempPrefix) {
				t.Fatalf("round %d: leftover %s/%s", round, s, e.Name())
			}
		}
	}
	stateAfter := func(ops string) State {
		st := Incoming
		for _, op := range ops {
			switch op {
			case 'A':
				st = Incoming // recovery puts active back in incoming
			case 'D':
				st = Deferred
			case 'R':
				st = ""
			}
		}
		return st
	}
	for id, e := range expect {
		plan := crashPlan(e.n)
		if !strings.HasPrefix(plan, e.done) {
			t.Fatalf("round %d: %s did %q, planned %q", round, id, e.done, plan)
		}
		want := stateAfter(e.done)
		alt := want // the next operation may have happened, unacknowledged
		if len(e.done) < len(plan) {
			alt = stateAfter(plan[:len(e.done)+1])
		}
		m, err := q.Read(id)
		if errors.Is(err, ErrNotFound) {
			if want != "" && alt != "" {
				t.Fatalf("round %d: acknowledged message %s (n=%d, done %q) lost", round, id, e.n, e.done)
			}
			e.done = plan // removed for good
			continue
		}
		if err != nil {
			t.Fatalf("round %d: %s: %v", round, id, err)
		}
		got := m.State
		sum := digest(readAll(t, m.Content()))
		st0 := m.Status[0].Outcome
		m.Close()
		if got != want && got != alt {
			t.Fatalf("round %d: %s (done %q of %q) in %s, want %s", round, id, e.done, plan, got, want)
		}
		if sum != e.sum {
			t.Fatalf("round %d: %s content differs", round, id)
		}
		if strings.Contains(e.done, "M") && st0 != Delivered {
			t.Fatalf("round %d: %s: acknowledged status lost: %v", round, id, st0)
		}
		// Settle what an unacknowledged operation did, for later rounds.
		if got == alt && got != want {
			e.done = plan[:len(e.done)+1]
		}
		if len(e.done) < len(plan) && plan[len(e.done)] == 'M' && st0 == Delivered {
			e.done += "M"
		}
	}
}
