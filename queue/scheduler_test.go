package queue

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
)

func TestSchedulerDeliversAndLogs(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	id := h.send("alice@example.com", "bob@example.net", "carol@example.org")
	h.clk.Advance(1500 * time.Millisecond) // a = 1.5 s before the scheduler takes it
	h.s.Start()
	h.sync()
	if got := h.ids(Incoming); len(got) != 0 {
		t.Fatalf("incoming still holds %v", got)
	}
	if got := h.ids(Active); len(got) != 0 {
		t.Fatalf("active still holds %v", got)
	}
	calls := rec.snapshot()
	if len(calls) != 2 {
		t.Fatalf("want one delivery per destination (2), got %d: %+v", len(calls), calls)
	}
	want := []string{
		id + ": from=<alice@example.com>, size=66, nrcpt=2 (queue active)",
		id + ": to=<bob@example.net>, relay=example.net[192.0.2.1]:25, delay=1.5, delays=1.5/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		id + ": to=<carol@example.org>, relay=example.org[192.0.2.1]:25, delay=1.5, delays=1.5/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		id + ": removed",
	}
	for _, l := range h.log.matching("to=<") {
		if !statusLine.MatchString(l) {
			t.Errorf("not in Postfix's form: %q", l)
		}
	}
	for _, w := range want {
		if len(h.log.matching(w)) != 1 {
			t.Errorf("log line missing: %q\nlog:\n%s", w, strings.Join(h.log.matching(""), "\n"))
		}
	}
}

func TestFormatDelay(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {120 * time.Millisecond, "0.12"}, {50 * time.Millisecond, "0.05"},
		{1300 * time.Millisecond, "1.3"}, {2 * time.Second, "2"}, {30 * time.Second, "30"},
		{3 * time.Millisecond, "0"}, {9960 * time.Millisecond, "10"}, {125 * time.Second, "125"},
	} {
		if got := formatDelay(c.d); got != c.want {
			t.Errorf("formatDelay(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	min, max := 300*time.Second, 4000*time.Second
	for _, c := range []struct{ age, want time.Duration }{
		{0, 300 * time.Second}, {299 * time.Second, 300 * time.Second}, {600 * time.Second, 600 * time.Second},
		{3999 * time.Second, 3999 * time.Second}, {5 * time.Hour, 4000 * time.Second},
	} {
		if got := retryDelay(t0, t0.Add(c.age), min, max); got != c.want {
			t.Errorf("age %v: delay %v, want %v", c.age, got, c.want)
		}
	}
}

// postfixAttempts is the schedule spec §7.4 gives for a message arriving
// at 0 whose attempts all fail: after an attempt at t the file's time is
// t + clamp(t, min, max), and the attempt happens at the first deferred
// scan (every queue_run_delay) at or after it. Expiry is checked after
// each attempt.
func postfixAttempts(runDelay, minB, maxB, life time.Duration) []time.Duration {
	var out []time.Duration
	t := time.Duration(0)
	for {
		out = append(out, t)
		if t >= life {
			return out
		}
		due := t + min(max(t, minB), maxB)
		scan := (due + runDelay - 1) / runDelay * runDelay
		t = scan
	}
}

func TestSchedulerRetryScheduleAndExpiry(t *testing.T) {
	rec := &recorder{reply: deferAll}
	life := 24 * time.Hour
	h := newHarness(t, SchedulerConfig{Deliverer: rec, MaxQueueLifetime: life})
	rec.clk = h.clk
	h.s.Start()
	id := h.send("alice@example.com", "bob@example.net")
	h.sync()
	for h.clk.Now().Sub(t0) < life+2*time.Hour {
		h.clk.Advance(300 * time.Second)
		h.sync()
	}
	var got []time.Duration
	for _, c := range rec.snapshot() {
		got = append(got, c.at.Sub(t0))
	}
	want := postfixAttempts(300*time.Second, 300*time.Second, 4000*time.Second, life)
	if !slices.Equal(got, want) {
		t.Fatalf("attempts at\n%v\nwant (spec §7.4)\n%v", got, want)
	}
	// The spec's own example: 0, 300, 600, 1200, 2400, 4800 s, then about
	// every 4000 s.
	first := []time.Duration{0, 300, 600, 1200, 2400, 4800}
	for i, s := range first {
		if got[i] != s*time.Second {
			t.Errorf("attempt %d at %v, want %v", i, got[i], s*time.Second)
		}
	}
	if len(h.ids(Deferred))+len(h.ids(Active))+len(h.ids(Incoming)) != 0 {
		t.Fatal("the expired message is still queued")
	}
	if n := h.log.matching(id + ": from=<alice@example.com>, status=expired, returned to sender"); len(n) != 1 {
		t.Errorf("expiry logged %d times", len(n))
	}
	fails := h.notes.of(FailureNotice)
	if len(fails) != 1 || !fails[0].Expired || !slices.Equal(fails[0].Recipients, []int{0}) ||
		fails[0].Statuses[0].Outcome != Failed || !strings.Contains(fails[0].Statuses[0].Reason, "450 4.2.0") {
		t.Fatalf("failure notices: %+v", fails)
	}
}

func TestSchedulerBounceLifetime(t *testing.T) {
	rec := &recorder{reply: deferAll}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, MaxQueueLifetime: 5 * 24 * time.Hour, BounceLifetime: time.Hour})
	rec.clk = h.clk
	h.s.Start()
	bounce := h.send("", "alice@example.com")
	normal := h.send("bob@example.com", "carol@example.net")
	h.sync()
	for range 16 { // 80 minutes
		h.clk.Advance(300 * time.Second)
		h.sync()
	}
	if got := h.ids(Deferred); !slices.Equal(got, []string{normal}) {
		t.Fatalf("deferred = %v, want only %s (the bounce %s expired)", got, normal, bounce)
	}
	if len(h.log.matching(bounce+": from=<>, status=expired, returned to sender")) != 1 {
		t.Error("the null-sender message's expiry was not logged")
	}
	// The bounce's expiry came at the first attempt at or after 1h:
	// attempts at 0, 300, 600, 1200, 2400, 4800 s, so at 4800 s.
	var last time.Duration
	for _, c := range rec.snapshot() {
		if c.id == bounce {
			last = c.at.Sub(t0)
		}
	}
	if last != 4800*time.Second {
		t.Errorf("last attempt of the bounce at %v, want 1h20m", last)
	}
}

func TestSchedulerZeroLifetimeOneAttempt(t *testing.T) {
	c, err := config.Parse("main.cf", strings.NewReader("maximal_queue_lifetime = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := SchedulerConfigFromMain(c)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{reply: deferAll}
	cfg.Deliverer = rec
	h := newHarness(t, cfg)
	rec.clk = h.clk
	h.s.Start()
	h.send("alice@example.com", "bob@example.net")
	h.sync()
	if n := len(rec.snapshot()); n != 1 || len(h.ids(Deferred)) != 0 || len(h.notes.of(FailureNotice)) != 1 {
		t.Fatalf("attempts %d, deferred %v, notices %d: want one attempt, then returned", n, h.ids(Deferred), len(h.notes.of(FailureNotice)))
	}
}

func TestSchedulerDelayWarningOnce(t *testing.T) {
	rec := &recorder{reply: deferAll}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, DelayWarning: time.Hour})
	rec.clk = h.clk
	h.s.Start()
	id := h.send("alice@example.com", "bob@example.net", "carol@example.net")
	h.sync()
	for range 60 { // 5 hours
		h.clk.Advance(300 * time.Second)
		h.sync()
	}
	ds := h.notes.of(DelayNotice)
	if len(ds) != 1 {
		t.Fatalf("%d delay notices, want 1", len(ds))
	}
	// First attempt at or after 1h: 4800 s.
	if ds[0].QueueID != id || !slices.Equal(ds[0].Recipients, []int{0, 1}) {
		t.Errorf("notice %+v", ds[0])
	}
	m, err := h.q.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Attrs[AttrDelayWarned] == "" {
		t.Error("the delay warning is not recorded in the queue file")
	}
}

func TestSchedulerTenRecipientsThreeDeferred(t *testing.T) {
	soft := map[string]bool{"r2@example.net": true, "r5@example.net": true, "r8@example.net": true}
	var pass atomic.Int32
	rec := &recorder{reply: func(d *Delivery, r Recipient) Result {
		if soft[r.Addr] && pass.Load() == 0 {
			return deferAll(d, r)
		}
		return Result{Outcome: Delivered, Relay: "mx", Reason: "250 ok"}
	}}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, RecipientLimit: 4})
	rec.clk = h.clk
	h.s.Start()
	var rcpts []string
	for i := range 10 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.net", i))
	}
	id := h.send("alice@example.com", rcpts...)
	h.sync()
	// Durably recorded: the queue file says who is done.
	m, err := h.q.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != Deferred || !m.ModTime.Equal(t0.Add(300*time.Second)) {
		t.Errorf("state %s, retry at %v; want deferred until +300s", m.State, m.ModTime)
	}
	if got := m.Pending(); !slices.Equal(got, []int{2, 5, 8}) {
		t.Errorf("pending %v, want [2 5 8]", got)
	}
	m.Close()
	if n := len(rec.snapshot()); n != 3 {
		t.Errorf("first pass: %d batches for 10 recipients with a recipient limit of 4, want 3", n)
	}
	pass.Store(1)
	h.clk.Advance(300 * time.Second)
	h.sync()
	calls := rec.snapshot()[3:]
	var second []string
	for _, c := range calls {
		second = append(second, c.rcpts...)
	}
	if !slices.Equal(second, []string{"r2@example.net", "r5@example.net", "r8@example.net"}) {
		t.Fatalf("the retry delivered to %v, want only the three deferred", second)
	}
	if len(h.ids(Deferred)) != 0 || len(h.log.matching(id+": removed")) != 1 {
		t.Fatal("message not removed after the retry")
	}
}

func TestSchedulerHardFailureBounces(t *testing.T) {
	rec := &recorder{reply: func(d *Delivery, r Recipient) Result {
		if strings.HasPrefix(r.Addr, "nobody") {
			return Result{Outcome: Failed, DSN: "5.1.1", Relay: "mx[192.0.2.1]:25", Reason: "host mx said: 550 5.1.1 no such user"}
		}
		return Result{Outcome: Delivered, Relay: "mx[192.0.2.1]:25", Reason: "250 ok"}
	}}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	h.s.Start()
	env := &cleanup.Envelope{Arrival: h.clk.Now(), Sender: "alice@example.com", Recipients: []cleanup.Recipient{
		{Addr: "nobody@example.net"}, {Addr: "bob@example.net", Notify: []string{"SUCCESS"}}, {Addr: "carol@example.net"}}}
	id := commit(t, h.q, testContent, env)
	h.sync()
	if len(h.ids(Deferred)) != 0 || len(h.log.matching(id+": removed")) != 1 {
		t.Fatal("a bounced recipient must not be retried; the message should be gone")
	}
	f := h.notes.of(FailureNotice)
	if len(f) != 1 || !slices.Equal(f[0].Recipients, []int{0}) || f[0].Expired || f[0].Statuses[0].DSN != "5.1.1" {
		t.Fatalf("failure notices %+v", f)
	}
	if s := h.notes.of(SuccessNotice); len(s) != 1 || !slices.Equal(s[0].Recipients, []int{1}) {
		t.Fatalf("success notices %+v", s)
	}
	if len(h.log.matching("to=<nobody@example.net>, relay=mx[192.0.2.1]:25, delay=0, delays=0/0/0/0, dsn=5.1.1, status=bounced (host mx said: 550 5.1.1 no such user)")) != 1 {
		t.Error("bounce status line missing")
	}
	// The notice's content opener gives the queued message.
	rc, err := f[0].Open()
	if err == nil {
		t.Error("the content of a removed message should no longer open")
		rc.Close()
	}
}

func TestSchedulerNotifierFailureKeepsMessage(t *testing.T) {
	rec := &recorder{reply: func(d *Delivery, r Recipient) Result {
		return Result{Outcome: Failed, DSN: "5.1.1", Reason: "no such user"}
	}}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	h.notes.fail = true
	h.s.Start()
	id := h.send("alice@example.com", "nobody@example.net")
	h.sync()
	if got := h.ids(Deferred); !slices.Equal(got, []string{id}) {
		t.Fatalf("deferred %v: a message whose bounce could not be handed over must stay queued", got)
	}
	h.notes.mu.Lock()
	h.notes.fail = false
	h.notes.mu.Unlock()
	h.clk.Advance(300 * time.Second)
	h.sync()
	if len(h.ids(Deferred)) != 0 || len(h.notes.of(FailureNotice)) != 1 || len(rec.snapshot()) != 1 {
		t.Fatalf("after the retry: deferred %v, notices %d, deliveries %d; want gone, 1, 1",
			h.ids(Deferred), len(h.notes.of(FailureNotice)), len(rec.snapshot()))
	}
}

func TestSchedulerSurvivesPanicsAndMissingResults(t *testing.T) {
	var n atomic.Int32
	d := DelivererFunc(func(ctx context.Context, d *Delivery) []Result {
		switch n.Add(1) {
		case 1:
			panic("agent bug")
		case 2:
			return nil // no statuses
		}
		res := make([]Result, len(d.Recipients))
		for i := range res {
			res[i] = Result{Outcome: Delivered}
		}
		return res
	})
	h := newHarness(t, SchedulerConfig{Deliverer: d})
	h.s.Start()
	a := h.send("alice@example.com", "bob@example.net")
	b := h.send("alice@example.com", "bob@example.net")
	h.sync()
	if got := h.ids(Deferred); len(got) != 2 {
		t.Fatalf("deferred %v, want both", got)
	}
	if len(h.log.matching("status=deferred (unknown mail transport error)")) != 1 ||
		len(h.log.matching("status=deferred (delivery agent returned no status)")) != 1 {
		t.Errorf("log:\n%s", strings.Join(h.log.matching("status="), "\n"))
	}
	h.clk.Advance(300 * time.Second)
	h.sync()
	if len(h.ids(Deferred)) != 0 || len(h.log.matching(a+": removed")) != 1 || len(h.log.matching(b+": removed")) != 1 {
		t.Fatal("the scheduler did not carry on after the panic")
	}
}

func TestSchedulerHoldNeverScanned(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, MaxQueueLifetime: time.Hour})
	rec.clk = h.clk
	h.s.Start()
	env := &cleanup.Envelope{Arrival: h.clk.Now(), Sender: "a@example.com", Hold: true,
		Recipients: []cleanup.Recipient{{Addr: "b@example.net"}}}
	id := commit(t, h.q, testContent, env)
	for range 5 {
		h.clk.Advance(24 * time.Hour)
		h.sync()
	}
	if len(rec.snapshot()) != 0 || !slices.Equal(h.ids(Hold), []string{id}) {
		t.Fatal("a held message was delivered or expired")
	}
	if err := h.q.Release(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(300 * time.Second)
	h.sync()
	if len(rec.snapshot()) != 1 {
		t.Fatal("a released message was not delivered")
	}
}

func TestSchedulerConcurrencySlowStartAndLimit(t *testing.T) {
	rec := &recorder{gate: make(chan struct{}), delay: 5 * time.Millisecond}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, InitialConcurrency: 2, ConcurrencyLimit: 7})
	rec.clk = h.clk
	for range 150 {
		h.send("alice@example.com", "bob@example.net")
	}
	h.s.Start()
	// Slow start: with nothing delivered yet, only the initial window
	// runs.
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.snapshot()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("%d deliveries started before any finished, want initial_destination_concurrency 2", n)
	}
	close(rec.gate)
	h.sync()
	if n := len(rec.snapshot()); n != 150 {
		t.Fatalf("%d deliveries, want 150", n)
	}
	if p := rec.peak["smtp:example.net"]; p != 7 {
		t.Fatalf("peak concurrency %d, want the limit 7 reached and never passed", p)
	}
}

func TestSchedulerPerTransportLimits(t *testing.T) {
	rec := &recorder{delay: 5 * time.Millisecond, byRcpt: "local"}
	route := RouterFunc(func(_ context.Context, _ *cleanup.Envelope, rcpt string) (Route, error) {
		if strings.HasSuffix(rcpt, "@local.test") {
			return Route{Transport: "local", Nexthop: "local.test"}, nil
		}
		return Route{Transport: "smtp", Nexthop: "example.net"}, nil
	})
	h := newHarness(t, SchedulerConfig{Deliverer: rec, Router: route, InitialConcurrency: 5, ConcurrencyLimit: 20,
		Transports: map[string]TransportLimits{"smtp": {ConcurrencyLimit: 3}, "local": {ConcurrencyLimit: 2, RecipientLimit: 1}}})
	rec.clk = h.clk
	var local []string
	for i := range 6 {
		local = append(local, fmt.Sprintf("u%d@local.test", i))
	}
	for range 40 {
		h.send("alice@example.com", "bob@example.net")
	}
	for range 5 {
		h.send("alice@example.com", local...)
	}
	h.s.Start()
	h.sync()
	if len(rec.peak) != 7 {
		t.Errorf("destinations seen: %v", rec.peak)
	}
	if p := rec.peak["smtp:example.net"]; p != 3 {
		t.Errorf("smtp peak %d, want smtp_destination_concurrency_limit 3", p)
	}
	for _, c := range rec.snapshot() {
		if c.transport == "local" && (len(c.rcpts) != 1 || c.nexthop != "local.test") {
			t.Fatalf("local batch %+v: want one recipient per delivery (local_destination_recipient_limit 1) and the real next hop", c)
		}
	}
	for k, p := range rec.peak {
		// local_destination_recipient_limit = 1: the destination, and so
		// the concurrency limit, is per recipient.
		if strings.HasPrefix(k, "local:") && p > 2 {
			t.Errorf("%s peak %d > 2", k, p)
		}
	}
}

func TestSchedulerDeadDestination(t *testing.T) {
	var attempts atomic.Int32
	rec := &recorder{reply: func(d *Delivery, r Recipient) Result {
		if d.Nexthop == "dead.example" {
			attempts.Add(1)
			return Result{Outcome: Delayed, DSN: "4.4.1", Site: true, Reason: "connect to dead.example[192.0.2.9]:25: Connection refused"}
		}
		return Result{Outcome: Delivered}
	}}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, InitialConcurrency: 2, ConcurrencyLimit: 2, ProcessLimit: 2})
	rec.clk = h.clk
	for range 30 {
		h.send("alice@example.com", "x@dead.example")
		h.send("alice@example.com", "y@live.example")
	}
	h.s.Start()
	h.sync()
	if n := attempts.Load(); n > 4 {
		t.Errorf("%d attempts at a dead destination; after a window of failures the rest must be deferred without one", n)
	}
	if n := len(h.log.matching("status=deferred (delivery temporarily suspended: connect to dead.example[192.0.2.9]:25: Connection refused)")); n < 25 {
		t.Errorf("%d recipients deferred as suspended, want the rest of the 30", n)
	}
	if n := len(h.ids(Deferred)); n != 30 {
		t.Errorf("%d deferred, want the 30 for dead.example", n)
	}
	if n := len(h.log.matching("@live.example>, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent")); n != 30 {
		t.Errorf("%d delivered to live.example, want 30", n)
	}
	// After minimal_backoff_time the destination is tried again.
	before := attempts.Load()
	h.clk.Advance(300 * time.Second)
	h.sync()
	if attempts.Load() == before {
		t.Error("the dead destination was not tried again after minimal_backoff_time")
	}
}

func TestSchedulerFairness(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, SchedulerConfig{Deliverer: rec, ProcessLimit: 2})
	rec.clk = h.clk
	for range 1000 {
		h.send("alice@example.com", "bob@big.example")
	}
	for range 10 {
		h.send("alice@example.com", "carol@small.example")
	}
	h.s.Start()
	h.sync()
	calls := rec.snapshot()
	if len(calls) != 1010 {
		t.Fatalf("%d deliveries", len(calls))
	}
	last := 0
	for i, c := range calls {
		if c.nexthop == "small.example" {
			last = i
		}
	}
	// Round robin: the small destination's ten get every other slot.
	t.Logf("last small.example delivery: %d of 1010", last)
	if last > 40 {
		t.Fatalf("the last of small.example's 10 messages was delivery %d of 1010: starved behind big.example", last)
	}
}

func TestSchedulerRestartResumesRemainingRecipients(t *testing.T) {
	var pass atomic.Int32
	rec := &recorder{reply: func(d *Delivery, r Recipient) Result {
		if pass.Load() == 0 && (r.Index == 2 || r.Index == 3) {
			return deferAll(d, r)
		}
		return Result{Outcome: Delivered}
	}}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	h.s.Start()
	id := h.send("alice@example.com", "a@x.example", "b@x.example", "c@x.example", "d@x.example", "e@x.example")
	h.sync()
	h.stop()
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}
	pass.Store(1)
	q2 := openTest(t, h.dir, Options{Clock: h.clk})
	cfg := h.cfg
	cfg.Notifier = h.notes
	s2, err := NewScheduler(q2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop(context.Background())
	s2.Start()
	h.clk.Advance(300 * time.Second)
	ctx := context.Background()
	if err := s2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	calls := rec.snapshot()
	if len(calls) != 2 || !slices.Equal(calls[1].rcpts, []string{"c@x.example", "d@x.example"}) {
		t.Fatalf("calls %+v: the restarted scheduler must deliver only the two deferred recipients", calls)
	}
	if _, err := q2.Read(id); err == nil {
		t.Fatal("message still queued after the retry")
	}
}

func TestSchedulerStopWaitsForDeliveries(t *testing.T) {
	var done atomic.Int32
	d := DelivererFunc(func(ctx context.Context, d *Delivery) []Result {
		time.Sleep(100 * time.Millisecond)
		done.Add(1)
		return []Result{{Outcome: Delivered}}
	})
	h := newHarness(t, SchedulerConfig{Deliverer: d, InitialConcurrency: 2, ConcurrencyLimit: 2})
	for range 10 {
		h.send("a@example.com", "b@example.net")
	}
	h.s.Start()
	time.Sleep(30 * time.Millisecond)
	if err := h.s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := int(done.Load())
	if n == 0 || n == 10 {
		t.Fatalf("%d deliveries finished at Stop; want the ones in flight only", n)
	}
	// What was not delivered went back to incoming; nothing is in active.
	if len(h.ids(Active)) != 0 || len(h.ids(Incoming)) != 10-n {
		t.Fatalf("after Stop: active %v, incoming %d; want 0 and %d", h.ids(Active), len(h.ids(Incoming)), 10-n)
	}
}

func TestSchedulerConfigFromMain(t *testing.T) {
	main := "queue_run_delay = 60s\nminimal_backoff_time = 120\nmaximal_backoff_time = 1h\nmaximal_queue_lifetime = 2\n" +
		"bounce_queue_lifetime = 1d\ndelay_warning_time = 4h\ninitial_destination_concurrency = 3\n" +
		"default_destination_concurrency_limit = 10\nsmtp_destination_concurrency_limit = 4\nrelay_destination_recipient_limit = 7\n" +
		"qmgr_message_active_limit = 500\n"
	c, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	got, err := SchedulerConfigFromMain(c)
	if err != nil {
		t.Fatal(err)
	}
	if got.QueueRunDelay != time.Minute || got.MinimalBackoff != 2*time.Minute || got.MaximalBackoff != time.Hour ||
		got.MaxQueueLifetime != 48*time.Hour || got.BounceLifetime != 24*time.Hour || got.DelayWarning != 4*time.Hour ||
		got.InitialConcurrency != 3 || got.ConcurrencyLimit != 10 || got.RecipientLimit != 50 || got.MessageActiveLimit != 500 ||
		got.ProcessLimit != 100 {
		t.Errorf("%+v", got)
	}
	want := map[string]TransportLimits{"smtp": {ConcurrencyLimit: 4}, "relay": {RecipientLimit: 7},
		"local": {ConcurrencyLimit: 2, RecipientLimit: 1}}
	for k, v := range want {
		if got.Transports[k] != v {
			t.Errorf("transport %s: %+v, want %+v", k, got.Transports[k], v)
		}
	}
	bad, _ := config.Parse("main.cf", strings.NewReader("minimal_backoff_time = soon\n"))
	if _, err := SchedulerConfigFromMain(bad); err == nil || !strings.Contains(err.Error(), "minimal_backoff_time") {
		t.Errorf("bad value: %v", err)
	}
}

var statusLine = regexp.MustCompile(`^\w+: to=<[^>]*>, (orig_to=<[^>]*>, )?relay=\S+, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=\d\.\d+\.\d+, status=(sent|deferred|bounced) \(.*\)$`)

// Cleanup's Commit wakes the scheduler: new mail goes out at once, not at
// the next queue_run_delay scan (the harness polls hourly and never
// moves the clock here).
func TestSchedulerSeesCommitsAtOnce(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	h.s.Start()
	h.sync() // the start-up scan is over
	h.send("alice@example.com", "bob@example.net")
	for deadline := time.Now().Add(10 * time.Second); len(rec.snapshot()) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("a committed message was not delivered without a scan")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSchedulerFlushAndForceExpire(t *testing.T) {
	rec := &recorder{reply: deferAll}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	h.s.Start()
	a := h.send("alice@example.com", "bob@example.net")
	b := h.send("alice@example.com", "carol@example.net")
	h.sync()
	h.clk.Advance(10 * time.Second)
	h.sync()
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("%d attempts before the retry time, want 2", n)
	}
	// postqueue -f: everything deferred is due now.
	h.s.Flush()
	h.sync()
	if n := len(rec.snapshot()); n != 4 {
		t.Fatalf("%d attempts after Flush, want 4", n)
	}
	// postsuper -f: the next pass expires the message.
	if err := h.q.SetAttr(context.Background(), a, map[string]string{AttrForceExpire: "1"}); err != nil {
		t.Fatal(err)
	}
	h.s.Flush()
	h.sync()
	if got := h.ids(Deferred); !slices.Equal(got, []string{b}) {
		t.Fatalf("deferred %v, want only %s", got, b)
	}
	if len(h.log.matching(a+": from=<alice@example.com>, status=force-expired, returned to sender")) != 1 {
		t.Error("force-expiry not logged")
	}
}

func TestSchedulerRedirectFilterAndRouteErrors(t *testing.T) {
	rec := &recorder{}
	route := RouterFunc(func(_ context.Context, _ *cleanup.Envelope, rcpt string) (Route, error) {
		switch {
		case strings.HasPrefix(rcpt, "nouser@"):
			return Route{}, &RouteError{Permanent: true, DSN: "5.1.1", Reason: "unknown user: \"nouser\""}
		case strings.HasPrefix(rcpt, "tempfail@"):
			return Route{}, fmt.Errorf("transport_maps lookup failure")
		}
		return Route{Transport: "smtp", Nexthop: "mx.example"}, nil
	})
	h := newHarness(t, SchedulerConfig{Deliverer: rec, Router: route})
	rec.clk = h.clk
	mk := func(env *cleanup.Envelope) string {
		env.Arrival, env.Sender = h.clk.Now(), "alice@example.com"
		return commit(t, h.q, testContent, env)
	}
	mk(&cleanup.Envelope{Redirect: "admin@example.org", Recipients: []cleanup.Recipient{{Addr: "x@example.net"}}})
	mk(&cleanup.Envelope{Filter: "scan:[127.0.0.1]:10025", Recipients: []cleanup.Recipient{{Addr: "y@example.net"}}})
	c := mk(&cleanup.Envelope{Recipients: []cleanup.Recipient{{Addr: "nouser@example.net"}, {Addr: "tempfail@example.net"}}})
	h.s.Start()
	h.sync()
	got := map[string]string{}
	for _, cl := range rec.snapshot() {
		got[strings.Join(cl.rcpts, ",")] = cl.transport + ":" + cl.nexthop
	}
	want := map[string]string{"admin@example.org": "smtp:mx.example", "y@example.net": "scan:[127.0.0.1]:10025"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	if len(h.log.matching(c+": to=<nouser@example.net>, relay=none, delay=0, delays=0/0/0/0, dsn=5.1.1, status=bounced (unknown user: \"nouser\")")) != 1 ||
		len(h.log.matching(c+": to=<tempfail@example.net>, relay=none, delay=0, delays=0/0/0/0, dsn=4.3.0, status=deferred (transport_maps lookup failure)")) != 1 {
		t.Errorf("log:\n%s", strings.Join(h.log.matching(c), "\n"))
	}
	if got := h.ids(Deferred); !slices.Equal(got, []string{c}) {
		t.Errorf("deferred %v, want %s", got, c)
	}
}

func TestSchedulerStopWithoutStart(t *testing.T) {
	h := newHarness(t, SchedulerConfig{Deliverer: &recorder{}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Sync(ctx); err == nil {
		t.Fatal("Sync on a stopped scheduler succeeded")
	}
}

// postsuper -h while a message is being delivered: the hold wins over the
// scheduler's Defer at the end of the pass.
func TestSchedulerHoldDuringDelivery(t *testing.T) {
	rec := &recorder{reply: deferAll, gate: make(chan struct{})}
	h := newHarness(t, SchedulerConfig{Deliverer: rec})
	rec.clk = h.clk
	id := h.send("alice@example.com", "bob@example.net")
	h.s.Start()
	for deadline := time.Now().Add(10 * time.Second); len(rec.snapshot()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no delivery started")
		}
	}
	if err := h.q.Hold(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	close(rec.gate)
	h.sync()
	if got := h.ids(Hold); !slices.Equal(got, []string{id}) {
		t.Fatalf("hold %v deferred %v: the held message was moved", got, h.ids(Deferred))
	}
}
