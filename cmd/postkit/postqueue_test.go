package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

// qsDeliverer answers by recipient domain: later.example defers until
// accept is set, slow.example waits for gate and then bounces, anything
// else is delivered. Calls are announced on calls.
type qsDeliverer struct {
	mu     sync.Mutex
	accept bool
	seen   []string
	calls  chan string
	gate   chan struct{}
}

func (d *qsDeliverer) Deliver(ctx context.Context, del *queue.Delivery) []queue.Result {
	var out []queue.Result
	for _, r := range del.Recipients {
		d.mu.Lock()
		d.seen = append(d.seen, del.QueueID+" "+r.Addr)
		accept := d.accept
		d.mu.Unlock()
		d.calls <- del.QueueID + " " + r.Addr
		switch {
		case strings.HasSuffix(r.Addr, "@slow.example"):
			select {
			case <-d.gate:
			case <-ctx.Done():
			}
			out = append(out, queue.Result{Outcome: queue.Failed, DSN: "5.1.1", Reason: "550 5.1.1 no such user"})
		case strings.HasSuffix(r.Addr, "later.example") && !accept:
			out = append(out, queue.Result{Outcome: queue.Delayed, DSN: "4.4.1", Reason: "connect to mx.later.example[192.0.2.7]:25: Connection refused"})
		default:
			out = append(out, queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Reason: "250 2.0.0 Ok"})
		}
	}
	return out
}

func (d *qsDeliverer) attempts(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.seen {
		if strings.HasPrefix(s, id+" ") {
			n++
		}
	}
	return n
}

type qsNotices struct {
	mu sync.Mutex
	n  int
}

func (n *qsNotices) get() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.n
}

func (n *qsNotices) Notify(context.Context, *queue.Notice) error {
	n.mu.Lock()
	n.n++
	n.mu.Unlock()
	return nil
}

// qsSystem is a running queue, scheduler and control server, with a
// main.cf in etc whose queue_directory is the queue.
type qsSystem struct {
	t     *testing.T
	etc   string
	qdir  string
	q     *queue.Queue
	s     *queue.Scheduler
	srv   *control.Server
	d     *qsDeliverer
	notes *qsNotices
}

var qsQuiet = slog.New(slog.DiscardHandler)

func startQueueSystem(t *testing.T) *qsSystem {
	t.Helper()
	dir := t.TempDir()
	sys := &qsSystem{t: t, etc: filepath.Join(dir, "etc"), qdir: filepath.Join(dir, "queue"),
		d: &qsDeliverer{calls: make(chan string, 1000), gate: make(chan struct{})}, notes: &qsNotices{}}
	if err := os.Mkdir(sys.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sys.etc, "main.cf"), []byte("queue_directory = "+sys.qdir+"\nfast_flush_domains = later.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys.open()
	t.Cleanup(func() {
		select {
		case <-sys.d.gate:
		default:
			close(sys.d.gate)
		}
		sys.stop()
	})
	return sys
}

// open opens the queue and starts the scheduler (queue_run_delay and
// backoff of an hour: nothing is retried on its own during a test) and
// the control server.
func (sys *qsSystem) open() {
	t := sys.t
	q, err := queue.Open(sys.qdir, queue.Options{Logger: qsQuiet})
	if err != nil {
		t.Fatal(err)
	}
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: sys.d, Notifier: sys.notes, Logger: qsQuiet,
		QueueRunDelay: time.Hour, MinimalBackoff: time.Hour, MaximalBackoff: 2 * time.Hour,
		RecipientLimit: 2, InitialConcurrency: 1, ConcurrencyLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	srv := control.NewServer(q, s)
	srv.Logger = qsQuiet
	if err := srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	sys.q, sys.s, sys.srv = q, s, srv
}

// stop stops the server, the scheduler and closes the queue.
func (sys *qsSystem) stop() {
	if sys.q == nil {
		return
	}
	t := sys.t
	if err := sys.srv.Close(); err != nil {
		t.Errorf("control server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sys.s.Stop(ctx); err != nil {
		t.Errorf("scheduler: %v", err)
	}
	if err := sys.q.Close(); err != nil {
		t.Errorf("queue: %v", err)
	}
	sys.q = nil
}

func (sys *qsSystem) send(hold bool, rcpts ...string) string {
	sys.t.Helper()
	return sys.sendFrom("alice@example.com", hold, rcpts...)
}

func (sys *qsSystem) sendFrom(sender string, hold bool, rcpts ...string) string {
	t := sys.t
	t.Helper()
	ctx := context.Background()
	f, err := sys.q.Create(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	content := "From: alice@example.com\r\nSubject: queue commands\r\n\r\nline 1\r\nline 2\r\n"
	if _, err := io.WriteString(f, content); err != nil {
		t.Fatal(err)
	}
	env := &cleanup.Envelope{Arrival: time.Now(), Sender: sender, Size: int64(len(content)), Hold: hold}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: r})
	}
	if err := f.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	return f.ID()
}

func (sys *qsSystem) sync() {
	sys.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sys.s.Sync(ctx); err != nil {
		sys.t.Fatalf("Sync: %v", err)
	}
}

func (sys *qsSystem) waitCall(want string) {
	sys.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got := <-sys.d.calls:
			if got == want {
				return
			}
		case <-timeout:
			sys.t.Fatalf("no delivery of %q", want)
		}
	}
}

// deferOne queues a message to later.example and waits until its first
// attempt deferred it.
func (sys *qsSystem) deferOne(rcpt string) string {
	sys.t.Helper()
	id := sys.send(false, rcpt)
	sys.waitCall(id + " " + rcpt)
	sys.sync()
	if st := sys.state(id); st != queue.Deferred {
		sys.t.Fatalf("%s in %q, want deferred", id, st)
	}
	return id
}

// state returns the queue holding id ("" when it is gone). It reads the
// directories, so it works with or without the queue open.
func (sys *qsSystem) state(id string) queue.State {
	for _, s := range queue.States {
		if _, err := os.Stat(filepath.Join(sys.qdir, string(s), id)); err == nil {
			return s
		}
	}
	return ""
}

type cmdResult struct {
	code           int
	stdout, stderr string
}

// cmd runs "postkit ARGS..." with -c (sendmail's -C) pointing at the
// system's main.cf inserted after the command name.
func (sys *qsSystem) cmd(stdin string, args ...string) cmdResult {
	flag := "-c"
	if args[0] == "sendmail" || args[0] == "mailq" {
		flag = "-C"
	}
	argv := append([]string{"postkit", args[0], flag, sys.etc}, args[1:]...)
	var out, errb bytes.Buffer
	code := run(argv, strings.NewReader(stdin), &out, &errb)
	return cmdResult{code, out.String(), errb.String()}
}

func (r cmdResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// postqueue -p and -j, mailq and sendmail -bp print the running queue's
// listing, in Postfix's format (queue's admin tests compare it with
// Postfix's).
func TestPostqueueListsRunningQueue(t *testing.T) {
	sys := startQueueSystem(t)
	if r := sys.cmd("", "postqueue", "-p"); r.code != 0 || r.stdout != "Mail queue is empty\n" || r.stderr != "" {
		t.Fatalf("empty queue: %v", r)
	}
	h := sys.send(true, "held@ok.example")
	d := sys.deferOne("bob@later.example")
	var p, j bytes.Buffer
	if err := sys.q.Mailq(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	if err := sys.q.MailqJSON(context.Background(), &j); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{h + "!", d + " ", "(connect to mx.later.example[192.0.2.7]:25: Connection refused)", "-- 0 Kbytes in 2 Requests."} {
		if !strings.Contains(p.String(), s) {
			t.Fatalf("the listing lacks %q:\n%s", s, p.String())
		}
	}
	for _, args := range [][]string{{"postqueue", "-p"}, {"mailq"}, {"sendmail", "-bp"}} {
		if r := sys.cmd("", args...); r.code != 0 || r.stdout != p.String() || r.stderr != "" {
			t.Errorf("%q: %v\nwant stdout:\n%s", args, r, p.String())
		}
	}
	if r := sys.cmd("", "postqueue", "-j"); r.code != 0 || r.stdout != j.String() || r.stderr != "" {
		t.Errorf("postqueue -j: %v\nwant %s", r, j.String())
	}
	// MAIL_CONFIG instead of -c.
	t.Setenv("MAIL_CONFIG", sys.etc)
	var out, errb bytes.Buffer
	if code := run([]string{"postqueue", "-p"}, strings.NewReader(""), &out, &errb); code != 0 || out.String() != p.String() {
		t.Errorf("postqueue -p with MAIL_CONFIG: exit %d %q %q", code, out.String(), errb.String())
	}
}

// postqueue -f, -s SITE and -i ID, and sendmail -q, -qRSITE and -qIID:
// the running scheduler delivers the deferred mail at once, though the
// retry time and the next queue run are an hour away.
func TestPostqueueFlushActsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(id string) []string
	}{
		{"postqueue -f", func(string) []string { return []string{"postqueue", "-f"} }},
		{"postqueue -s", func(string) []string { return []string{"postqueue", "-s", "Later.Example"} }},
		{"postqueue -i", func(id string) []string { return []string{"postqueue", "-i", id} }},
		{"postqueue -i -i", func(id string) []string { return []string{"postqueue", "-i", "4jc18t6WRMz1SDCY", "-i", id} }},
		{"sendmail -q", func(string) []string { return []string{"sendmail", "-q"} }},
		{"sendmail -qR", func(string) []string { return []string{"sendmail", "-qRlater.example"} }},
		{"sendmail -qI", func(id string) []string { return []string{"sendmail", "-qI" + id} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := startQueueSystem(t)
			id := sys.deferOne("bob@later.example")
			other := sys.deferOne("carol@other.later.example")
			sys.d.mu.Lock()
			sys.d.accept = true
			sys.d.mu.Unlock()
			if r := sys.cmd("", tc.args(id)...); r.code != 0 || r.stdout != "" || r.stderr != "" {
				t.Fatalf("%v", r)
			}
			sys.waitCall(id + " bob@later.example")
			sys.sync()
			if st := sys.state(id); st != "" {
				t.Fatalf("%s still in %s", id, st)
			}
			// -s and -i leave the other message alone; -f takes it too.
			wantOther := queue.State("")
			if !strings.HasSuffix(tc.name, "-f") && !strings.HasSuffix(tc.name, "-q") {
				wantOther = queue.Deferred
			}
			if st := sys.state(other); st != wantOther {
				t.Errorf("the other message is in %q, want %q", st, wantOther)
			}
		})
	}
}

// postsuper -h keeps a message from a flush, -H releases it and it is
// delivered at once, -r requeues, -d deletes; IDs come from arguments,
// ALL or standard input, and the counts are reported as Postfix does.
func TestPostsuperOnRunningQueue(t *testing.T) {
	sys := startQueueSystem(t)
	a := sys.deferOne("a@later.example")
	b := sys.deferOne("b@later.example")
	if r := sys.cmd("", "postsuper", "-h", a, "-h", "bad/id"); r.code != 0 ||
		r.stderr != "postsuper: "+a+": placed on hold\npostsuper: warning: invalid mail queue id: bad/id\npostsuper: Placed on hold: 1 message\n" {
		t.Fatalf("-h: %v", r)
	}
	sys.d.mu.Lock()
	sys.d.accept = true
	sys.d.mu.Unlock()
	if r := sys.cmd("", "postqueue", "-f"); r.code != 0 {
		t.Fatalf("-f: %v", r)
	}
	sys.waitCall(b + " b@later.example")
	sys.sync()
	if sys.state(a) != queue.Hold || sys.d.attempts(a) != 1 || sys.state(b) != "" {
		t.Fatalf("after -f: held %s in %q after %d attempts; %s in %q", a, sys.state(a), sys.d.attempts(a), b, sys.state(b))
	}
	if r := sys.cmd("", "postsuper", "-H", "ALL", "deferred"); r.stderr != "postsuper: Released from hold: 0 messages\n" {
		t.Fatalf("-H ALL deferred: %v", r)
	}
	if r := sys.cmd("", "postsuper", "-H", "ALL"); r.code != 0 || r.stderr != "postsuper: Released from hold: 1 message\n" {
		t.Fatalf("-H ALL: %v", r)
	}
	sys.waitCall(a + " a@later.example")
	sys.sync()
	if st := sys.state(a); st != "" {
		t.Fatalf("released message in %q", st)
	}

	// -r: a deferred message is tried again at once.
	sys.d.mu.Lock()
	sys.d.accept = false
	sys.d.mu.Unlock()
	c := sys.deferOne("c@later.example")
	if r := sys.cmd("", "postsuper", "-r", c); r.stderr != "postsuper: "+c+": requeued\npostsuper: Requeued: 1 message\n" {
		t.Fatalf("-r: %v", r)
	}
	sys.waitCall(c + " c@later.example")
	sys.sync()
	if n := sys.d.attempts(c); n != 2 {
		t.Fatalf("%d attempts after -r, want 2", n)
	}

	// -d - reads the IDs from standard input.
	d := sys.deferOne("d@later.example")
	h := sys.send(true, "e@ok.example")
	r := sys.cmd(c+"\n"+d+"\nnot_an_id!\n", "postsuper", "-d", "-")
	if r.code != 0 || r.stderr != "postsuper: "+c+": removed\npostsuper: "+d+": removed\npostsuper: warning: invalid mail queue id: not_an_id!\npostsuper: Deleted: 2 messages\n" {
		t.Fatalf("-d -: %v", r)
	}
	if sys.state(c) != "" || sys.state(d) != "" || sys.state(h) != queue.Hold {
		t.Fatalf("after -d -: %q %q %q", sys.state(c), sys.state(d), sys.state(h))
	}
	if r := sys.cmd("", "postsuper", "-d", "ALL", "bogus"); r.code != 1 || r.stderr != "postsuper: fatal: invalid directory name: bogus\n" {
		t.Fatalf("bad queue name: %v", r)
	}
	if r := sys.cmd("", "postsuper", "-d", "ALL", "hold"); r.stderr != "postsuper: Deleted: 1 message\n" || sys.state(h) != "" {
		t.Fatalf("-d ALL hold: %v", r)
	}
}

// postsuper -d of a message being delivered: it is gone at once, the
// delivery's bounce is neither recorded nor notified, the batch that had
// not started is never tried, and nothing brings the message back.
func TestPostsuperDeletesActiveMessage(t *testing.T) {
	sys := startQueueSystem(t)
	id := sys.send(false, "a@slow.example", "b@slow.example", "c@slow.example")
	sys.waitCall(id + " a@slow.example")
	if st := sys.state(id); st != queue.Active {
		t.Fatalf("in %q during its delivery", st)
	}
	if r := sys.cmd("", "postsuper", "-d", id); r.code != 0 || r.stderr != "postsuper: "+id+": removed\npostsuper: Deleted: 1 message\n" {
		t.Fatalf("%v", r)
	}
	if st := sys.state(id); st != "" {
		t.Fatalf("deleted message in %s", st)
	}
	close(sys.d.gate)
	sys.sync()
	if r := sys.cmd("", "postqueue", "-f"); r.code != 0 {
		t.Fatal(r)
	}
	sys.sync()
	if st := sys.state(id); st != "" {
		t.Fatalf("the deleted message came back in %s", st)
	}
	if n := sys.d.attempts(id); n != 2 {
		t.Errorf("%d recipients tried, want the 2 of the batch in flight", n)
	}
	if n := sys.notes.get(); n != 0 {
		t.Errorf("%d notices for a deleted message", n)
	}
	// After a restart too: the journal does not bring it back.
	sys.stop()
	sys.open()
	sys.sync()
	if st := sys.state(id); st != "" {
		t.Fatalf("after a restart the deleted message is in %s", st)
	}
}

func TestPostcatQueueID(t *testing.T) {
	sys := startQueueSystem(t)
	id := sys.send(true, "x@ok.example")
	for _, o := range []struct {
		flags []string
		opts  queue.PostcatOptions
	}{
		{nil, queue.PostcatOptions{}},
		{[]string{"-h"}, queue.PostcatOptions{Header: true}},
		{[]string{"-b"}, queue.PostcatOptions{Body: true}},
		{[]string{"-e"}, queue.PostcatOptions{Envelope: true}},
		{[]string{"-bh"}, queue.PostcatOptions{Header: true, Body: true}},
	} {
		var want bytes.Buffer
		if err := sys.q.Postcat(context.Background(), &want, id, o.opts); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{"postcat"}, o.flags...), "-q", id)
		if r := sys.cmd("", args...); r.code != 0 || r.stdout != want.String() || r.stderr != "" {
			t.Errorf("%q: %v\nwant %q", args, r, want.String())
		}
	}
	if r := sys.cmd("", "postcat", "-h", "-q", id); !strings.HasPrefix(r.stdout, "From: alice@example.com\nSubject: queue commands\n") {
		t.Errorf("postcat -h: %v", r)
	}
	if r := sys.cmd("", "postcat", "-q", "ABC"); r.code != 1 || r.stderr != "postcat: fatal: open queue file ABC: No such file or directory\n" {
		t.Errorf("missing ID: %v", r)
	}
}

// With no server: postqueue -p lists the queue itself after Postfix's
// warning, -f/-s/-i fail as Postfix's do (exit 69), postsuper and
// postcat open the queue themselves; with the queue locked by a process
// that has no control socket, they refuse.
func TestQueueCommandsWithServerDown(t *testing.T) {
	sys := startQueueSystem(t)
	h := sys.send(true, "x@ok.example")
	h2 := sys.send(true, "y@ok.example")
	var listing bytes.Buffer
	if err := sys.q.Mailq(context.Background(), &listing); err != nil {
		t.Fatal(err)
	}
	sys.stop()
	r := sys.cmd("", "postqueue", "-p")
	if r.code != 0 || r.stdout != listing.String() ||
		r.stderr != "postqueue: warning: Mail system is down -- accessing queue directly (Connect to the postkit control service: No such file or directory)\n" {
		t.Fatalf("-p with the server down: %v", r)
	}
	for _, args := range [][]string{{"postqueue", "-f"}, {"postqueue", "-s", "later.example"}, {"postqueue", "-i", h}} {
		if r := sys.cmd("", args...); r.code != 69 || r.stdout != "" || r.stderr != "postqueue: fatal: Cannot flush mail queue - mail system is down\n" {
			t.Errorf("%q: %v", args, r)
		}
	}
	if r := sys.cmd("", "postcat", "-h", "-q", h); r.code != 0 || !strings.Contains(r.stdout, "Subject: queue commands") {
		t.Errorf("postcat, server down: %v", r)
	}
	if r := sys.cmd("", "postsuper", "-d", h); r.code != 0 || r.stderr != "postsuper: "+h+": removed\npostsuper: Deleted: 1 message\n" || sys.state(h) != "" {
		t.Errorf("postsuper, server down: %v", r)
	}
	// The queue open by a process without a control socket.
	q, err := queue.Open(sys.qdir, queue.Options{Logger: qsQuiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if r := sys.cmd("", "postsuper", "-d", h2); r.code != 1 || !strings.Contains(r.stderr, "does not answer on its control socket") || sys.state(h2) != queue.Hold {
		t.Errorf("postsuper, queue locked: %v", r)
	}
	if r := sys.cmd("", "postqueue", "-p"); r.code != 69 || !strings.Contains(r.stderr, "postqueue: fatal: Queue report unavailable - ") {
		t.Errorf("postqueue -p, queue locked: %v", r)
	}
}

func TestQueueCommandUsage(t *testing.T) {
	sys := startQueueSystem(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"postqueue", "-x"}, 69, "postqueue: invalid option -- 'x'\npostqueue: fatal: " + pqUsage + "\n"},
		{[]string{"postqueue"}, 69, "postqueue: fatal: " + pqUsage + "\n"},
		{[]string{"postqueue", "-p", "-f"}, 69, "postqueue: fatal: " + pqUsage + "\n"},
		// fast_flush_domains = later.example: its subdomains too, nothing else.
		{[]string{"postqueue", "-s", "example.org"}, 69, "postqueue: fatal: Flush service is not configured for destination \"example.org\"\n"},
		{[]string{"postqueue", "-s", "sub.later.example"}, 0, ""},
		{[]string{"postsuper", "-x"}, 1, "postsuper: invalid option -- 'x'\npostsuper: fatal: " + psUsage + "\n"},
		{[]string{"postsuper", "-d"}, 1, "postsuper: option requires an argument -- 'd'\npostsuper: fatal: " + psUsage + "\n"},
		{[]string{"postsuper", "-s"}, 1, "postsuper: fatal: -s is not built in postkit's postsuper\n"},
	} {
		if r := sys.cmd("", tc.args...); r.code != tc.code || r.stderr != tc.stderr {
			t.Errorf("%q: %v; want exit %d, %q", tc.args, r, tc.code, tc.stderr)
		}
	}
	// -c with no main.cf.
	var out, errb bytes.Buffer
	if code := run([]string{"postkit", "postqueue", "-c", "/nonexistent", "-p"}, nil, &out, &errb); code != 69 ||
		errb.String() != "postqueue: fatal: open /nonexistent/main.cf: No such file or directory\n" {
		t.Errorf("missing main.cf: %d %q", code, errb.String())
	}
}

// postsuper -e marks a deferred message; the next attempt (here made at
// once by postqueue -i) returns it to the sender. postsuper -f releases
// a held message, which the scheduler takes and expires at once.
func TestPostsuperExpire(t *testing.T) {
	sys := startQueueSystem(t)
	d := sys.deferOne("a@later.example")
	h := sys.send(true, "b@later.example")
	if r := sys.cmd("", "postsuper", "-e", d, "-e", h); r.code != 0 ||
		r.stderr != "postsuper: "+d+": expired\npostsuper: "+h+": expired\npostsuper: Force-expired: 2 messages\n" {
		t.Fatalf("-e: %v", r)
	}
	if r := sys.cmd("", "postqueue", "-j"); !strings.Contains(r.stdout, `"queue_id": "`+d+`", "arrival_time": `) ||
		strings.Count(r.stdout, `"forced_expire": true`) != 2 {
		t.Fatalf("postqueue -j after -e: %v", r)
	}
	if sys.state(h) != queue.Hold || sys.state(d) != queue.Deferred {
		t.Fatalf("after -e: %q %q", sys.state(h), sys.state(d))
	}
	if r := sys.cmd("", "postqueue", "-i", d); r.code != 0 {
		t.Fatal(r)
	}
	sys.waitCall(d + " a@later.example")
	sys.sync()
	if st := sys.state(d); st != "" || sys.notes.get() != 1 {
		t.Fatalf("force-expired message in %q after its attempt, %d notices", st, sys.notes.get())
	}
	if r := sys.cmd("", "postsuper", "-f", h); r.stderr != "postsuper: "+h+": released from hold\npostsuper: Force-expired: 0 messages\npostsuper: Released from hold: 1 message\n" {
		t.Fatalf("-f: %v", r)
	}
	sys.waitCall(h + " b@later.example")
	sys.sync()
	if st := sys.state(h); st != "" || sys.notes.get() != 2 {
		t.Fatalf("released force-expired message in %q, %d notices", st, sys.notes.get())
	}
}
