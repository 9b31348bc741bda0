package control_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// deliverer answers per recipient domain: "ok.example" delivers,
// "later.example" and its subdomains defer until accept is set, "bad.example" bounces;
// "slow.example" waits for gate first. Every call is recorded and
// announced on calls.
type deliverer struct {
	mu     sync.Mutex
	accept bool
	seen   []string // "ID rcpt"
	calls  chan string
	gate   chan struct{}
}

func newDeliverer() *deliverer {
	return &deliverer{calls: make(chan string, 1000), gate: make(chan struct{})}
}

func (d *deliverer) setAccept(v bool) {
	d.mu.Lock()
	d.accept = v
	d.mu.Unlock()
}

func (d *deliverer) Deliver(ctx context.Context, del *queue.Delivery) []queue.Result {
	var out []queue.Result
	for _, r := range del.Recipients {
		d.mu.Lock()
		d.seen = append(d.seen, del.QueueID+" "+r.Addr)
		accept := d.accept
		d.mu.Unlock()
		d.calls <- del.QueueID + " " + r.Addr
		_, dom, _ := strings.Cut(strings.ToLower(r.Addr), "@")
		switch {
		case dom == "slow.example":
			select {
			case <-d.gate:
			case <-ctx.Done():
			}
			out = append(out, queue.Result{Outcome: queue.Failed, DSN: "5.1.1", Reason: "550 5.1.1 no such user"})
		case dom == "bad.example":
			out = append(out, queue.Result{Outcome: queue.Failed, DSN: "5.1.1", Reason: "550 5.1.1 no such user"})
		case strings.HasSuffix(dom, "later.example") && !accept:
			out = append(out, queue.Result{Outcome: queue.Delayed, DSN: "4.4.1", Reason: "connect to mx.later.example[192.0.2.7]:25: Connection refused"})
		default:
			out = append(out, queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "mx[192.0.2.1]:25", Reason: "250 2.0.0 Ok"})
		}
	}
	return out
}

// attempts returns the recipients tried for id, in order.
func (d *deliverer) attempts(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, s := range d.seen {
		if i, r, _ := strings.Cut(s, " "); i == id {
			out = append(out, r)
		}
	}
	return out
}

// notices records the DSNs the scheduler hands out.
type notices struct {
	mu sync.Mutex
	n  []string // "kind ID"
}

func (n *notices) Notify(_ context.Context, no *queue.Notice) error {
	n.mu.Lock()
	n.n = append(n.n, no.Kind.String()+" "+no.QueueID)
	n.mu.Unlock()
	return nil
}

func (n *notices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.n)
}

// env is a running queue, scheduler and control server.
type env struct {
	t     testing.TB
	q     *queue.Queue
	s     *queue.Scheduler
	srv   *control.Server
	c     *control.Client
	d     *deliverer
	notes *notices
}

// start opens a queue in a temporary directory with a scheduler that
// never scans on its own during a test (queue_run_delay and the backoff
// are an hour), and serves it on the control socket.
func start(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, d: newDeliverer(), notes: &notices{}}
	dir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: e.d, Notifier: e.notes, Logger: quiet,
		QueueRunDelay: time.Hour, MinimalBackoff: time.Hour, MaximalBackoff: 2 * time.Hour,
		// Two recipients per batch and one batch at a time per
		// destination, so a message's third recipient waits behind the
		// first two.
		RecipientLimit: 2, InitialConcurrency: 1, ConcurrencyLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	s.Start()
	e.srv = control.NewServer(q, s)
	e.srv.Logger = quiet
	if err := e.srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	e.c = &control.Client{Path: control.SocketPath(dir)}
	t.Cleanup(func() {
		select {
		case <-e.d.gate:
		default:
			close(e.d.gate)
		}
		if err := e.srv.Close(); err != nil {
			t.Errorf("closing the control server: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stopping the scheduler: %v", err)
		}
		if err := q.Close(); err != nil {
			t.Errorf("closing the queue: %v", err)
		}
	})
	return e
}

// send commits a message from alice to rcpts.
func (e *env) send(rcpts ...string) string {
	e.t.Helper()
	return e.commit(false, rcpts)
}

// sendHeld commits a message that goes straight to hold (cleanup's HOLD).
func (e *env) sendHeld(rcpts ...string) string {
	e.t.Helper()
	return e.commit(true, rcpts)
}

func (e *env) commit(hold bool, rcpts []string) string {
	e.t.Helper()
	ctx := context.Background()
	f, err := e.q.Create(ctx, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	content := "From: alice@example.com\r\nSubject: test\r\n\r\nbody\r\n"
	if _, err := io.WriteString(f, content); err != nil {
		e.t.Fatal(err)
	}
	en := &cleanup.Envelope{Arrival: time.Now(), Sender: "alice@example.com", Size: int64(len(content)), Hold: hold}
	for _, r := range rcpts {
		en.Recipients = append(en.Recipients, cleanup.Recipient{Addr: r})
	}
	if err := f.Commit(ctx, en); err != nil {
		e.t.Fatal(err)
	}
	return f.ID()
}

// sync waits until the scheduler has finished every message it took.
func (e *env) sync() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.s.Sync(ctx); err != nil {
		e.t.Fatalf("Sync: %v", err)
	}
}

// waitCall waits for the deliverer to be called with want ("ID rcpt").
func (e *env) waitCall(want string) {
	e.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-e.d.calls:
			if got == want {
				return
			}
		case <-timeout:
			e.t.Fatalf("no delivery of %q", want)
		}
	}
}

// state returns the queue holding id, or "" if none.
func (e *env) state(id string) queue.State {
	e.t.Helper()
	m, err := e.q.Read(id)
	if err != nil {
		return ""
	}
	m.Close()
	return m.State
}

func (e *env) ids(s queue.State) []string {
	e.t.Helper()
	es, err := e.q.List(s)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, x := range es {
		out = append(out, x.ID)
	}
	return out
}
