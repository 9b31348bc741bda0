package control_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

var bg = context.Background()

// deferOne queues a message to later.example and waits until its first
// attempt deferred it.
func (e *env) deferOne(rcpts ...string) string {
	e.t.Helper()
	if len(rcpts) == 0 {
		rcpts = []string{"bob@later.example"}
	}
	id := e.send(rcpts...)
	e.waitCall(id + " " + rcpts[0])
	e.sync()
	if st := e.state(id); st != queue.Deferred {
		e.t.Fatalf("%s is in %q after a deferring attempt, want deferred", id, st)
	}
	return id
}

// The listing over the socket is the queue's own, byte for byte, also
// when it spans many data records.
func TestMailqOverSocket(t *testing.T) {
	e := start(t)
	var empty bytes.Buffer
	if err := e.c.Mailq(bg, &empty, false); err != nil {
		t.Fatal(err)
	}
	if empty.String() != "Mail queue is empty\n" {
		t.Fatalf("empty queue listing %q", empty.String())
	}
	// Held messages stay put for the listing: 400 blocks, well over one
	// 32 KB data record.
	for i := range 400 {
		e.sendHeld(fmt.Sprintf("user%d@ok.example", i))
	}
	e.sync()
	if n := len(e.ids(queue.Hold)); n != 400 {
		t.Fatalf("%d held", n)
	}
	for _, json := range []bool{false, true} {
		var got, want bytes.Buffer
		if err := e.c.Mailq(bg, &got, json); err != nil {
			t.Fatal(err)
		}
		var err error
		if json {
			err = e.q.MailqJSON(bg, &want)
		} else {
			err = e.q.Mailq(bg, &want)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got.Len() < 40000 || got.String() != want.String() {
			t.Errorf("json=%v: %d bytes over the socket, %d from the queue; equal: %v", json, got.Len(), want.Len(), got.String() == want.String())
		}
	}
}

func TestPostcatOverSocket(t *testing.T) {
	e := start(t)
	id := e.send("bob@later.example")
	e.sync()
	for _, o := range []queue.PostcatOptions{{}, {Header: true}, {Body: true}, {Envelope: true}, {Header: true, Body: true}} {
		var got, want bytes.Buffer
		if err := e.c.Postcat(bg, &got, id, o); err != nil {
			t.Fatal(err)
		}
		if err := e.q.Postcat(bg, &want, id, o); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() || got.Len() == 0 {
			t.Errorf("%+v: got\n%s\nwant\n%s", o, got.String(), want.String())
		}
	}
	err := e.c.Postcat(bg, io_discard{}, "4jc18t6WRMz1SDCY", queue.PostcatOptions{})
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Kind != control.KindNotFound {
		t.Errorf("postcat of a missing ID: %v, want a not-found error", err)
	}
}

type io_discard struct{}

func (io_discard) Write(p []byte) (int, error) { return len(p), nil }

// postqueue -f: a deferred message is delivered at once, though its
// retry time is an hour away and so is the next queue run.
func TestFlushDeliversAtOnce(t *testing.T) {
	e := start(t)
	id := e.deferOne()
	e.d.setAccept(true)
	if err := e.c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	e.waitCall(id + " bob@later.example")
	e.sync()
	if st := e.state(id); st != "" {
		t.Fatalf("after the flush %s is in %s", id, st)
	}
}

// postqueue -s SITE: only the mail for that domain goes.
func TestFlushSite(t *testing.T) {
	e := start(t)
	a := e.deferOne("bob@later.example")
	b := e.deferOne("carol@Other.Later.Example")
	e.d.setAccept(true)
	n, err := e.c.FlushSite(bg, "LATER.example")
	if err != nil || n != 1 {
		t.Fatalf("flush-site: %d, %v; want 1 message", n, err)
	}
	e.waitCall(a + " bob@later.example")
	e.sync()
	if st := e.state(a); st != "" {
		t.Errorf("%s still in %s after -s later.example", a, st)
	}
	if st := e.state(b); st != queue.Deferred || len(e.d.attempts(b)) != 1 {
		t.Errorf("%s for another domain: in %q after %d attempts, want deferred after 1", b, st, len(e.d.attempts(b)))
	}
}

// postqueue -i ID: that message goes, the other stays.
func TestDeliverNow(t *testing.T) {
	e := start(t)
	a := e.deferOne()
	b := e.deferOne()
	e.d.setAccept(true)
	if err := e.c.Deliver(bg, b); err != nil {
		t.Fatal(err)
	}
	e.waitCall(b + " bob@later.example")
	e.sync()
	if e.state(b) != "" || e.state(a) != queue.Deferred {
		t.Fatalf("after -i %s: it is in %q, the other in %q", b, e.state(b), e.state(a))
	}
	// An unknown ID is no error, as with Postfix.
	if err := e.c.Deliver(bg, "4jc18t6WRMz1SDCY"); err != nil {
		t.Errorf("-i of an unknown ID: %v", err)
	}
}

// postsuper -h: a held message is not delivered by a flush; -H releases
// it and it goes at once.
func TestHoldAndRelease(t *testing.T) {
	e := start(t)
	id := e.deferOne()
	if n, err := e.c.Admin(bg, queue.AdminHold, []string{id}); err != nil || len(n) != 1 {
		t.Fatalf("hold: %d, %v", len(n), err)
	}
	e.d.setAccept(true)
	if err := e.c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Deliver(bg, id); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if got := e.d.attempts(id); len(got) != 1 || e.state(id) != queue.Hold {
		t.Fatalf("held message: %d attempts, in %q", len(got), e.state(id))
	}
	// Releasing from the wrong queue does nothing.
	if n, err := e.c.Admin(bg, queue.AdminRelease, nil, queue.Deferred); err != nil || len(n) != 0 {
		t.Fatalf("-H ALL deferred: %d, %v", len(n), err)
	}
	if n, err := e.c.Admin(bg, queue.AdminRelease, nil); err != nil || len(n) != 1 {
		t.Fatalf("-H ALL: %d, %v", len(n), err)
	}
	e.waitCall(id + " bob@later.example")
	e.sync()
	if st := e.state(id); st != "" {
		t.Fatalf("released message in %s", st)
	}
}

// postsuper -r: a deferred message goes back to incoming and is tried at
// once.
func TestRequeue(t *testing.T) {
	e := start(t)
	id := e.deferOne()
	e.d.setAccept(true)
	if n, err := e.c.Admin(bg, queue.AdminRequeue, []string{id}); err != nil || len(n) != 1 {
		t.Fatalf("requeue: %d, %v", len(n), err)
	}
	e.waitCall(id + " bob@later.example")
	e.sync()
	if st := e.state(id); st != "" {
		t.Fatalf("requeued message in %s", st)
	}
}

// startSlow queues a message whose first batch blocks in the deliverer
// and waits until that delivery has started.
func (e *env) startSlow(rcpts ...string) string {
	e.t.Helper()
	id := e.send(rcpts...)
	e.waitCall(id + " " + rcpts[0])
	if st := e.state(id); st != queue.Active {
		e.t.Fatalf("%s in %q during its delivery", id, st)
	}
	return id
}

// postsuper -d of an active message: it is gone at once; the delivery
// in flight ends with a bounce that is neither recorded nor notified,
// the batch that had not started is never tried, and nothing brings the
// message back.
func TestDeleteActive(t *testing.T) {
	e := start(t)
	id := e.startSlow("a@slow.example", "b@slow.example", "c@slow.example")
	if n, err := e.c.Admin(bg, queue.AdminDelete, []string{id}); err != nil || len(n) != 1 {
		t.Fatalf("delete: %d, %v", len(n), err)
	}
	if st := e.state(id); st != "" {
		t.Fatalf("deleted message still in %s", st)
	}
	close(e.d.gate)
	e.sync()
	e.d.setAccept(true)
	if err := e.c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	e.sync()
	for _, s := range queue.States {
		if ids := e.ids(s); len(ids) > 0 {
			t.Errorf("%s holds %v after the delete", s, ids)
		}
	}
	if got := e.d.attempts(id); !slices.Equal(got, []string{"a@slow.example", "b@slow.example"}) {
		t.Errorf("attempts %v: the batch after the delete must not start", got)
	}
	if n := e.notes.all(); len(n) > 0 {
		t.Errorf("notices for a deleted message: %v", n)
	}
}

// postsuper -h of an active message takes effect after the attempt in
// flight: its result is recorded, the next batch is not tried, and the
// message stays held; -H then delivers the rest.
func TestHoldActive(t *testing.T) {
	e := start(t)
	id := e.startSlow("a@slow.example", "b@slow.example", "c@ok.example", "d@slow.example")
	if n, err := e.c.Admin(bg, queue.AdminHold, []string{id}); err != nil || len(n) != 1 {
		t.Fatalf("hold: %d, %v", len(n), err)
	}
	close(e.d.gate)
	e.sync()
	if st := e.state(id); st != queue.Hold {
		t.Fatalf("held active message ended in %q", st)
	}
	m, err := e.q.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	// a and b bounced in the attempt in flight and c, another
	// destination, was delivered (all recorded); d did not start.
	if !slices.Equal(m.Pending(), []int{3}) || slices.Contains(e.d.attempts(id), "d@slow.example") {
		t.Fatalf("pending %v attempts %v", m.Pending(), e.d.attempts(id))
	}
	if n, err := e.c.Admin(bg, queue.AdminRelease, []string{id}); err != nil || len(n) != 1 {
		t.Fatalf("release: %d, %v", len(n), err)
	}
	e.waitCall(id + " d@slow.example")
	e.sync()
	if st := e.state(id); st != "" {
		t.Fatalf("released message in %q", st)
	}
}

// postsuper -r of an active message: the attempt in flight finishes and
// the message is taken up again at once, without the next queue run.
func TestRequeueActive(t *testing.T) {
	e := start(t)
	id := e.startSlow("a@slow.example", "b@later.example")
	if n, err := e.c.Admin(bg, queue.AdminRequeue, nil, queue.Active); err != nil || len(n) != 1 {
		t.Fatalf("requeue ALL active: %d, %v", len(n), err)
	}
	e.d.setAccept(true)
	close(e.d.gate)
	e.waitCall(id + " b@later.example")
	e.sync()
	if st := e.state(id); st != "" {
		t.Fatalf("requeued message in %q", st)
	}
}

// ALL with a queue name acts on that queue only; the counts are what
// postsuper prints.
func TestAdminAllCounts(t *testing.T) {
	e := start(t)
	d1 := e.deferOne()
	d2 := e.deferOne()
	h := e.deferOne()
	if n, err := e.c.Admin(bg, queue.AdminHold, []string{h, "4jc18t6WRMz1SDCY", "not-an-id"}); err != nil || len(n) != 1 {
		t.Fatalf("hold: %d, %v", len(n), err)
	}
	if n, err := e.c.Admin(bg, queue.AdminDelete, nil, queue.Deferred); err != nil || len(n) != 2 {
		t.Fatalf("delete ALL deferred: %d, %v", len(n), err)
	}
	if e.state(d1) != "" || e.state(d2) != "" || e.state(h) != queue.Hold {
		t.Fatalf("after -d ALL deferred: %q %q %q", e.state(d1), e.state(d2), e.state(h))
	}
	if n, err := e.c.Admin(bg, queue.AdminDelete, []string{}); err != nil || len(n) != 0 {
		t.Fatalf("delete of no IDs: %d, %v", len(n), err)
	}
	if e.state(h) != queue.Hold {
		t.Fatal("an empty ID list deleted the held message")
	}
	if n, err := e.c.Admin(bg, queue.AdminDelete, nil); err != nil || len(n) != 1 {
		t.Fatalf("delete ALL: %d, %v", len(n), err)
	}
}

// The server refuses what does not parse, and answers flush without a
// scheduler with "unavailable".
func TestBadRequestAndNoScheduler(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	srv := control.NewServer(q, nil)
	srv.Logger = quiet
	if err := srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	path := control.SocketPath(dir)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	for _, req := range []string{"bogus\n", "mailq extra\n", "delete nosuchqueue\n\n", "postcat X zz\n", "mailq\x00\n"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "error bad-request ") {
			t.Errorf("%q: reply %q", req, line)
		}
	}
	cl := &control.Client{Path: path}
	var ce *control.Error
	if err := cl.Flush(bg); !errors.As(err, &ce) || ce.Kind != control.KindUnavailable {
		t.Errorf("flush without a scheduler: %v", err)
	}
	// A second server on the same socket is refused.
	srv2 := control.NewServer(q, nil)
	srv2.Logger = quiet
	if err := srv2.Listen(""); err == nil {
		srv2.Close()
		t.Error("a second server took over a live socket")
	}
	srv.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if err := cl.Flush(bg); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("flush with no server: %v, want ErrNotRunning", err)
	}
}

// errorLog counts the error lines the scheduler logs.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

// Admin operations racing with deliveries: whatever the interleaving,
// every message ends delivered, held or deleted, never in active, never
// both deleted and delivered afterwards, and the scheduler logs no error.
func TestAdminRacesDeliveries(t *testing.T) {
	elog := &errorLog{}
	dir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var mu sync.Mutex
	delivered := map[string]int{}
	d := queue.DelivererFunc(func(_ context.Context, del *queue.Delivery) []queue.Result {
		time.Sleep(time.Millisecond)
		mu.Lock()
		delivered[del.QueueID]++
		mu.Unlock()
		res := make([]queue.Result, len(del.Recipients))
		for i := range res {
			res[i] = queue.Result{Outcome: queue.Delivered, Reason: "250 ok"}
		}
		return res
	})
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: d, Logger: slog.New(elog),
		QueueRunDelay: time.Hour, RecipientLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Stop(bg)
	srv := control.NewServer(q, s)
	srv.Logger = quiet
	if err := srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := &control.Client{Path: control.SocketPath(dir)}

	e := &env{t: t, q: q, s: s}
	var ids []string
	deleted := map[string]bool{}
	for round := range 20 {
		for i := range 5 {
			ids = append(ids, e.send(fmt.Sprintf("r%d-%d-a@x.example", round, i), fmt.Sprintf("r%d-%d-b@y.example", round, i)))
		}
		if _, err := c.Admin(bg, queue.AdminHold, nil); err != nil {
			t.Fatal(err)
		}
		gone, err := c.Admin(bg, queue.AdminDelete, []string{ids[len(ids)-1], ids[len(ids)-3]})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range gone {
			deleted[id] = true
		}
		if _, err := c.Admin(bg, queue.AdminRelease, nil); err != nil {
			t.Fatal(err)
		}
		if round%3 == 0 {
			if _, err := c.Admin(bg, queue.AdminRequeue, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.sync()
	if err := c.Flush(bg); err != nil {
		t.Fatal(err)
	}
	e.sync()
	for _, st := range queue.States {
		if left := e.ids(st); len(left) > 0 {
			t.Errorf("%s holds %v", st, left)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if !deleted[id] && delivered[id] != 2 || delivered[id] > 2 {
			t.Errorf("%s: deleted %v, %d deliveries of its 2 recipients", id, deleted[id], delivered[id])
		}
	}
	elog.mu.Lock()
	defer elog.mu.Unlock()
	if len(elog.msgs) > 0 {
		t.Errorf("scheduler errors: %v", elog.msgs)
	}
}

// Queue.Admin without a scheduler (what postsuper does with the server
// down): the queues an operation may act on, and the named ones.
func TestQueueAdminDirect(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	e := &env{t: t, q: q}
	h := e.sendHeld("a@example.org")
	i := e.send("b@example.org") // stays in incoming: no scheduler
	check := func(op queue.AdminOp, ids []string, states []queue.State, want []string) {
		t.Helper()
		got, err := q.Admin(bg, op, ids, states)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%v %v %v: %v, %v; want %v", op, ids, states, got, err, want)
		}
	}
	check(queue.AdminHold, nil, []queue.State{queue.Hold}, nil)        // -h cannot take from hold
	check(queue.AdminRelease, nil, []queue.State{queue.Incoming}, nil) // -H only from hold
	check(queue.AdminDelete, nil, []queue.State{queue.Corrupt}, nil)   // corrupt is empty
	check(queue.AdminDelete, []string{}, nil, nil)                     // no IDs is not ALL
	check(queue.AdminHold, []string{i, i, "../x"}, nil, []string{i})   // bad and repeated IDs
	check(queue.AdminRelease, nil, nil, []string{h, i})                // ALL, in ID order
	check(queue.AdminRequeue, []string{h}, []queue.State{queue.Deferred}, []string{h})
	if e.state(h) != queue.Incoming || e.state(i) != queue.Deferred {
		t.Errorf("states %q %q", e.state(h), e.state(i))
	}
	if _, err := q.Admin(bg, queue.AdminDelete, nil, []queue.State{"maildrop"}); err == nil {
		t.Error("an unknown queue name was accepted")
	}
	check(queue.AdminDelete, nil, nil, []string{h, i})
}

// A queue ID spelled "ALL" cannot be sent: on the wire that line means
// every message (postsuper -d - reading "ALL" from its standard input
// deleted the whole queue).
func TestAdminIDNamedALL(t *testing.T) {
	e := start(t)
	h := e.sendHeld("a@example.org")
	if _, err := e.c.Admin(bg, queue.AdminDelete, []string{"ALL"}); err == nil {
		t.Error("an ID list holding \"ALL\" was sent")
	}
	var b strings.Builder
	if err := (&control.Request{Verb: control.VerbDelete, IDs: []string{h, "ALL"}}).Encode(&b); err == nil {
		t.Errorf("encoded %q", b.String())
	}
	if e.state(h) != queue.Hold {
		t.Errorf("message %s is %q after the refused request, want hold", h, e.state(h))
	}
}
