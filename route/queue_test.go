package route

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/queue"
)

// The Resolver as the queue scheduler's Router: recipients are grouped by
// the transport and next hop it gives, and the unknown virtual alias
// recipient is bounced without a delivery attempt.
func TestSchedulerRouting(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse("main.cf", strings.NewReader(`
myhostname = mx.example.com
mydestination = $myhostname, example.com
virtual_alias_domains = alias.example
relayhost = [smarthost.example]:587
transport_maps = inline:{ .sub.example=smtp:[sub-gw.example] }
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := FromConfig(ctx, cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var mu sync.Mutex
	got := map[string][]string{}
	deliver := queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		mu.Lock()
		defer mu.Unlock()
		var res []queue.Result
		for _, rc := range d.Recipients {
			key := d.Transport + " " + d.Nexthop
			got[key] = append(got[key], rc.Addr)
			res = append(res, queue.Result{Outcome: queue.Delivered, Relay: d.Transport, Reason: "ok"})
		}
		return res
	})
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	q, err := queue.Open(t.TempDir(), queue.Options{Clock: queue.NewFakeClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: deliver, Router: r, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Stop(ctx)

	f, err := q.Create(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("Subject: hi\r\n\r\nhello\r\n"))
	rcpts := []string{"joe@example.com", "a@x.sub.example", "b@y.sub.example", "nobody@alias.example", "c@remote.example"}
	env := &cleanup.Envelope{Sender: "alice@example.com"}
	for _, a := range rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: a})
	}
	if err := f.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	s.Sync(ctx)

	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{
		"local mx.example.com":         {"joe@example.com"},
		"smtp [sub-gw.example]":        {"a@x.sub.example", "b@y.sub.example"},
		"smtp [smarthost.example]:587": {"c@remote.example"},
	}
	for k := range got {
		slices.Sort(got[k])
	}
	if len(got) != len(want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "to=<nobody@alias.example>") || !strings.Contains(logs.String(), "dsn=5.1.1") ||
		!strings.Contains(logs.String(), "User unknown in virtual alias table") {
		t.Errorf("no bounce logged for nobody@alias.example:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
