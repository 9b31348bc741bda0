package queue

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

// logRecorder is a slog.Handler keeping the messages (the maillog lines).
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			out = append(out, s)
		}
	}
	return out
}

// noticeRecorder is a Notifier that records the calls (package bounce
// plugs in here in the real system).
type noticeRecorder struct {
	mu      sync.Mutex
	notices []Notice
	fail    bool
}

func (n *noticeRecorder) Notify(_ context.Context, no *Notice) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail {
		return context.DeadlineExceeded
	}
	cp := *no
	cp.Recipients = slices.Clone(no.Recipients)
	n.notices = append(n.notices, cp)
	return nil
}

func (n *noticeRecorder) of(k NoticeKind) []Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Notice
	for _, no := range n.notices {
		if no.Kind == k {
			out = append(out, no)
		}
	}
	return out
}

var t0 = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

type harness struct {
	t     testing.TB
	dir   string
	q     *Queue
	clk   *FakeClock
	s     *Scheduler
	log   *logRecorder
	notes *noticeRecorder
	cfg   SchedulerConfig
}

// newHarness opens a queue in a temporary directory with a FakeClock and
// a scheduler over it (not started).
func newHarness(t testing.TB, cfg SchedulerConfig) *harness {
	h := &harness{t: t, dir: t.TempDir(), clk: NewFakeClock(t0), log: &logRecorder{}, notes: &noticeRecorder{}}
	h.q = openTest(t, h.dir, Options{Clock: h.clk})
	if cfg.Notifier == nil {
		cfg.Notifier = h.notes
	}
	cfg.Logger = slog.New(h.log)
	cfg.Poll = time.Hour // the tests drive the scheduler with Sync
	h.cfg = cfg
	s, err := NewScheduler(h.q, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *harness) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.s.Stop(ctx); err != nil {
		h.t.Errorf("Stop: %v", err)
	}
}

// send queues a message arriving now.
func (h *harness) send(sender string, rcpts ...string) string {
	env := &cleanup.Envelope{Arrival: h.clk.Now(), Sender: sender}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: r})
	}
	return commit(h.t, h.q, testContent, env)
}

func (h *harness) sync() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.s.Sync(ctx); err != nil {
		h.t.Fatalf("Sync: %v", err)
	}
}

// ids lists the messages in a state.
func (h *harness) ids(s State) []string {
	h.t.Helper()
	es, err := h.q.List(s)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// call is one Deliver call as a recording Deliverer saw it.
type call struct {
	at        time.Time
	id        string
	transport string
	nexthop   string
	rcpts     []string
}

// recorder wraps a per-recipient reply function into a Deliverer that
// records the calls and the concurrency per destination.
type recorder struct {
	clk   Clock
	reply func(d *Delivery, r Recipient) Result
	delay time.Duration
	gate  chan struct{}
	// byRcpt names a transport whose destinations are per recipient.
	byRcpt string

	mu       sync.Mutex
	calls    []call
	inflight map[string]int
	peak     map[string]int
}

func (r *recorder) Deliver(ctx context.Context, d *Delivery) []Result {
	key := d.Transport + ":" + d.Nexthop
	if d.Transport == r.byRcpt {
		key = d.Transport + ":" + d.Recipients[0].Addr
	}
	r.mu.Lock()
	if r.inflight == nil {
		r.inflight, r.peak = map[string]int{}, map[string]int{}
	}
	c := call{at: r.clk.Now(), id: d.QueueID, transport: d.Transport, nexthop: d.Nexthop}
	for _, rc := range d.Recipients {
		c.rcpts = append(c.rcpts, rc.Addr)
	}
	r.calls = append(r.calls, c)
	r.inflight[key]++
	r.peak[key] = max(r.peak[key], r.inflight[key])
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight[key]--
		r.mu.Unlock()
	}()
	if r.gate != nil {
		<-r.gate
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	var out []Result
	for _, rc := range d.Recipients {
		if r.reply == nil {
			out = append(out, Result{Outcome: Delivered, DSN: "2.0.0", Relay: d.Nexthop + "[192.0.2.1]:25", Reason: "250 2.0.0 Ok"})
			continue
		}
		out = append(out, r.reply(d, rc))
	}
	return out
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func deferAll(d *Delivery, r Recipient) Result {
	return Result{Outcome: Delayed, DSN: "4.2.0", Relay: "mx[192.0.2.1]:25", Reason: "host mx said: 450 4.2.0 try later (in reply to RCPT TO command)"}
}
