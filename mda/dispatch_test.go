package mda_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// delivery returns a request for rcpts through transport:nexthop.
func delivery(transport, nexthop string, rcpts ...string) *queue.Delivery {
	d := &queue.Delivery{QueueID: "4Yxk3B5xWJzBq2", Transport: transport, Nexthop: nexthop,
		Envelope: &cleanup.Envelope{Sender: "s@x.test"},
		Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("Subject: t\r\n\r\nbody\r\n")), nil
		}}
	for i, r := range rcpts {
		d.Recipients = append(d.Recipients, queue.Recipient{Index: i, Addr: r})
	}
	return d
}

func TestDispatcherRoutesByTransport(t *testing.T) {
	var got []string
	rec := func(name string) queue.Deliverer {
		return queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
			got = append(got, name+":"+d.Nexthop)
			out := make([]queue.Result, len(d.Recipients))
			for i := range out {
				out[i] = queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: name, Reason: "ok " + d.Recipients[i].Addr}
			}
			return out
		})
	}
	d := &mda.Dispatcher{Agents: map[string]queue.Deliverer{"local": rec("local"), "smtp": rec("smtp")}}
	res := d.Deliver(context.Background(), delivery("smtp", "[mx.test]:25", "a@x", "b@x"))
	if len(res) != 2 || res[1].Reason != "ok b@x" || res[0].Relay != "smtp" {
		t.Fatalf("results %+v", res)
	}
	d.Deliver(context.Background(), delivery("local", "host", "c@x"))
	if strings.Join(got, ",") != "smtp:[mx.test]:25,local:host" {
		t.Errorf("agents called: %v", got)
	}
}

func TestDispatcherUnknownTransport(t *testing.T) {
	var logbuf bytes.Buffer
	d := &mda.Dispatcher{Agents: map[string]queue.Deliverer{"local": mda.Discard()},
		Logger: slog.New(slog.NewTextHandler(&logbuf, nil))}
	res := d.Deliver(context.Background(), delivery("nosuch", "x.test", "a@x.test", "b@x.test"))
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.Outcome != queue.Delayed || r.DSN != "4.3.0" || r.Reason != "mail transport unavailable" {
			t.Errorf("result %+v", r)
		}
	}
	if !strings.Contains(logbuf.String(), `no delivery agent for transport \"nosuch\"`) {
		t.Errorf("log: %s", logbuf.String())
	}
}

func TestDispatcherShortAnswerDefers(t *testing.T) {
	short := queue.DelivererFunc(func(ctx context.Context, d *queue.Delivery) []queue.Result {
		return []queue.Result{{Outcome: queue.Delivered, DSN: "2.0.0"}}
	})
	d := &mda.Dispatcher{Agents: map[string]queue.Deliverer{"x": short}}
	res := d.Deliver(context.Background(), delivery("x", "", "a@x", "b@x", "c@x"))
	if len(res) != 3 || res[0].Outcome != queue.Delivered || res[1].Outcome != queue.Delayed || res[2].DSN != "4.3.0" {
		t.Fatalf("results %+v", res)
	}
}

func TestBuiltinAgents(t *testing.T) {
	tests := []struct {
		agent   queue.Deliverer
		nexthop string
		outcome queue.Outcome
		dsn     string
		reason  string
	}{
		{mda.Discard(), "gone fishing", queue.Delivered, "2.0.0", "gone fishing"},
		{mda.Discard(), "", queue.Delivered, "2.0.0", "c.test"},
		{mda.Error(), "5.1.1 go away", queue.Failed, "5.1.1", "go away"},
		{mda.Error(), "no dsn here", queue.Failed, "5.0.0", "no dsn here"},
		{mda.Error(), "", queue.Failed, "5.0.0", "Address is undeliverable"},
		{mda.Error(), "5.1.1go", queue.Failed, "5.0.0", "5.1.1go"},
		{mda.Retry(), "4.7.1 later", queue.Delayed, "4.7.1", "later"},
		{mda.Retry(), "", queue.Delayed, "4.0.0", "Address is undeliverable"},
		{mda.Error(), "4.7.1 temporary", queue.Failed, "5.0.0", "temporary"},
		{mda.Retry(), "5.1.1 permanent", queue.Delayed, "4.0.0", "permanent"},
	}
	for _, tt := range tests {
		res := tt.agent.Deliver(context.Background(), delivery("t", tt.nexthop, "u@c.test"))
		if len(res) != 1 {
			t.Fatalf("%q: %d results", tt.nexthop, len(res))
		}
		r := res[0]
		if r.Outcome != tt.outcome || r.DSN != tt.dsn || r.Reason != tt.reason || r.Relay != "none" {
			t.Errorf("nexthop %q: got %v %s %q relay %q, want %v %s %q", tt.nexthop, r.Outcome, r.DSN, r.Reason, r.Relay, tt.outcome, tt.dsn, tt.reason)
		}
	}
}

func TestSplitDSN(t *testing.T) {
	tests := []struct{ in, dsn, text string }{
		{"5.1.1 go away", "5.1.1", "go away"},
		{"4.7.1", "4.7.1", ""},
		{"  2.0.0   ok ", "2.0.0", "ok"},
		{"3.1.1 no", "5.0.0", "3.1.1 no"},
		{"5.1234.1 x", "5.0.0", "5.1234.1 x"},
		{"5.1.1234 x", "5.0.0", "5.1.1234 x"},
		{"5.1. x", "5.0.0", "5.1. x"},
		{"5..1 x", "5.0.0", "5..1 x"},
		{"", "5.0.0", ""},
		{"5.100.999 long", "5.100.999", "long"},
	}
	for _, tt := range tests {
		dsn, text := mda.SplitDSN(tt.in, "5.0.0")
		if dsn != tt.dsn || text != tt.text {
			t.Errorf("SplitDSN(%q) = %q, %q; want %q, %q", tt.in, dsn, text, tt.dsn, tt.text)
		}
	}
}
