package bounce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
)

// lockedBuffer collects log lines written from the scheduler's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// queued is one message found in the queue.
type queued struct {
	id, sender, rcpt, body, data string
	state                        queue.State
}

func queuedMessages(t *testing.T, q *queue.Queue, skip string) []queued {
	t.Helper()
	var out []queued
	for _, st := range queue.States {
		ents, err := q.List(st)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.ID == skip {
				continue
			}
			m, err := q.Read(e.ID)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(m.Content())
			m.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Envelope.Recipients) != 1 {
				t.Fatalf("notice %s has %d recipients", e.ID, len(m.Envelope.Recipients))
			}
			out = append(out, queued{id: e.ID, sender: m.Envelope.Sender, rcpt: m.Envelope.Recipients[0].Addr,
				body: m.Envelope.Body, data: string(data), state: st})
		}
	}
	return out
}

// cleanupRig is a queue on disk, cleanup queueing into it, and a
// scheduler whose notifier queues its notices through that cleanup.
type cleanupRig struct {
	q   *queue.Queue
	clk *queue.FakeClock
	s   *queue.Scheduler
	log *lockedBuffer
}

func newCleanupRig(t *testing.T, t0 time.Time, classes []string, delayWarning time.Duration, wrap func(Opener) Submitter) *cleanupRig {
	t.Helper()
	clk := queue.NewFakeClock(t0)
	quiet := slog.New(slog.DiscardHandler)
	q, err := queue.Open(t.TempDir(), queue.Options{Clock: clk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cl, err := cleanup.New(cleanup.Config{Hostname: "mail.example.net", Location: time.UTC, Now: clk.Now, Logger: quiet}, q)
	if err != nil {
		t.Fatal(err)
	}
	settings := Defaults("mail.example.net")
	settings.Location = time.UTC
	settings.Now = clk.Now
	if classes != nil {
		settings.NotifyClasses = classes
	}
	var sub Submitter = NewCleanupSubmitter(cl)
	if wrap != nil {
		sub = wrap(sub.(Opener))
	}
	nf := NewNotifier(settings, sub)
	buf := &lockedBuffer{}
	nf.Logger = slog.New(slog.NewTextHandler(buf, nil))
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: testDeliverer, Notifier: nf,
		Clock: clk, Logger: quiet, DelayWarning: delayWarning})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Stop(context.Background()) })
	return &cleanupRig{q: q, clk: clk, s: s, log: buf}
}

// send queues a message from sender to rcpts and returns its queue ID.
func (r *cleanupRig) send(t *testing.T, sender string, notify []string, rcpts ...string) string {
	t.Helper()
	ctx := context.Background()
	content := "From: alice@example.com\r\nTo: bad@example.org\r\nSubject: hello\r\n\r\nthe body\r\n"
	f, err := r.q.Create(ctx, r.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, content); err != nil {
		t.Fatal(err)
	}
	env := &cleanup.Envelope{QueueID: f.ID(), Arrival: r.clk.Now(), Sender: sender, Size: int64(len(content))}
	for _, a := range rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: a, Notify: notify})
	}
	id := f.ID()
	if err := f.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	return id
}

func (r *cleanupRig) sync(t *testing.T) {
	t.Helper()
	for range 3 {
		if err := r.s.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A notice queued through cleanup carries its own queue ID in Received:
// and Message-Id, and the log names it as Postfix's bounce daemon does.
func TestCleanupSubmitterEndToEnd(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	type want struct {
		sender, rcpt, log string
	}
	tests := []struct {
		name    string
		rcpts   []string
		notify  []string
		classes []string
		delay   bool // advance past delay_warning_time before looking
		want    []want
	}{
		{name: "5xx: non-delivery notice to the sender", rcpts: []string{"bad@example.org"},
			want: []want{{"", "alice@example.com", "sender non-delivery notification"}}},
		{name: "bounce class: and a postmaster copy", rcpts: []string{"bad@example.org"}, classes: []string{"bounce"},
			want: []want{{"", "alice@example.com", "sender non-delivery notification"},
				{"double-bounce@mail.example.net", "postmaster@mail.example.net", "postmaster non-delivery notification"}}},
		{name: "NOTIFY=SUCCESS: success notice", rcpts: []string{"good@example.org"}, notify: []string{"SUCCESS"},
			want: []want{{"", "alice@example.com", "sender delivery status notification"}}},
		{name: "delay warning", rcpts: []string{"slow@example.org"}, delay: true,
			want: []want{{"", "alice@example.com", "sender delay notification"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newCleanupRig(t, t0, tc.classes, time.Hour, nil)
			orig := r.send(t, "alice@example.com", tc.notify, tc.rcpts...)
			r.sync(t)
			if tc.delay {
				r.clk.Advance(2 * time.Hour)
				r.sync(t)
			}
			got := queuedMessages(t, r.q, orig)
			// The notices to alice@example.com are tried once, deferred
			// by testDeliverer, and stay queued; the original may
			// still be queued (the delay case).
			if len(got) != len(tc.want) {
				t.Fatalf("%d notices queued, want %d: %+v", len(got), len(tc.want), got)
			}
			logs := r.log.String()
			for _, w := range tc.want {
				var n *queued
				for i := range got {
					if got[i].sender == w.sender && got[i].rcpt == w.rcpt {
						n = &got[i]
					}
				}
				if n == nil {
					t.Errorf("no notice from <%s> to <%s>: %+v", w.sender, w.rcpt, got)
					continue
				}
				recv := "Received: by mail.example.net (Postfix)\r\n\tid " + n.id + "; "
				if !strings.HasPrefix(n.data, recv) {
					t.Errorf("notice %s does not start with %q:\n%s", n.id, recv, n.data)
				}
				mid := regexp.MustCompile(`(?m)^Message-Id: <\d{14}\.` + regexp.QuoteMeta(n.id) + `@mail\.example\.net>\r$`)
				if !mid.MatchString(n.data) {
					t.Errorf("notice %s: Message-Id without its queue ID:\n%s", n.id, n.data)
				}
				if !strings.Contains(n.data, "X-Postfix-Queue-ID: "+orig+"\r\n") {
					t.Errorf("notice %s does not name the original %s", n.id, orig)
				}
				line := orig + ": " + w.log + ": " + n.id
				if !strings.Contains(logs, line) {
					t.Errorf("log lacks %q:\n%s", line, logs)
				}
			}
		})
	}
}

// failingOpener fails its nth Open.
type failingOpener struct {
	Opener
	n, calls int
}

func (f *failingOpener) Open(ctx context.Context, n *Notice) (OpenNotice, error) {
	f.calls++
	if f.calls == f.n {
		return nil, errors.New("queue full")
	}
	return f.Opener.Open(ctx, n)
}

// When a second queue file cannot be opened, the first is aborted: no
// notice is queued, and the original stays for the scheduler to try
// again.
func TestCleanupSubmitterAborts(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	fo := &failingOpener{n: 2}
	r := newCleanupRig(t, t0, []string{"bounce"}, 0, func(o Opener) Submitter { fo.Opener = o; return fo })
	orig := r.send(t, "alice@example.com", nil, "bad@example.org")
	r.sync(t)
	if fo.calls < 2 {
		t.Fatalf("Open called %d times, want at least 2", fo.calls)
	}
	if got := queuedMessages(t, r.q, orig); len(got) != 0 {
		t.Errorf("notices queued although opening one failed: %+v", got)
	}
	if _, err := r.q.Read(orig); err != nil {
		t.Errorf("the original is gone: %v", err)
	}
	// An opened file that is neither committed nor aborted stays behind
	// as a temporary file in incoming.
	ents, err := os.ReadDir(filepath.Join(r.q.Dir(), string(queue.Incoming)))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in incoming: %s", e.Name())
	}
}

// The plain Submit path (a finished notice) queues through cleanup too.
func TestCleanupSubmitterSubmit(t *testing.T) {
	clk := queue.NewFakeClock(time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC))
	quiet := slog.New(slog.DiscardHandler)
	q, err := queue.Open(t.TempDir(), queue.Options{Clock: clk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cl, err := cleanup.New(cleanup.Config{Hostname: "mail.example.net", Now: clk.Now, Logger: quiet}, q)
	if err != nil {
		t.Fatal(err)
	}
	data := "From: MAILER-DAEMON@mail.example.net\r\nTo: alice@example.com\r\nSubject: x\r\nDate: Sat, 28 Nov 2026 06:00:00 +0000\r\nMessage-Id: <a@b>\r\n\r\nhi \xc3\xa9\r\n"
	n := &Notice{Kind: Failure, Class: "sender", Sender: "", Recipient: "alice@example.com",
		Encoding: Encoding8Bit, Data: []byte(data)}
	if err := NewCleanupSubmitter(cl).Submit(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	got := queuedMessages(t, q, "")
	if len(got) != 1 || got[0].sender != "" || got[0].rcpt != "alice@example.com" || got[0].body != "8BITMIME" ||
		!strings.HasSuffix(got[0].data, "\r\n\r\nhi \xc3\xa9\r\n") {
		t.Errorf("queued %+v", got)
	}
}

// The log line for each notice is the one Postfix's bounce daemon writes
// ("ORIGID: sender non-delivery notification: NEWID" and its siblings):
// a private Postfix relays to the sink, which refuses bad*, defers slow*
// and takes the rest; the phrases it logs per original are compared with
// ours for the same notices.
func TestOracleNoticeLogLines(t *testing.T) {
	oracle.Require(t, "postfix")
	sk := startSink(t)
	main := fmt.Sprintf("relayhost = [127.0.0.1]:%d\ndefault_transport = smtp\nrelay_transport = smtp\n"+
		"queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"+
		"delay_warning_time = 1s\nnotify_classes = bounce, delay, resource, software\n", sk.Port())
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	settings := Defaults("mail.example.net")
	settings.NotifyClasses = []string{"bounce", "delay", "resource", "software"}
	cases := []struct {
		rcpt, params string
		kind         Kind
		action       Action
		notify       Notify
	}{
		{"bad1@dest.test", "", Failure, Failed, 0},
		{"slow1@dest.test", "NOTIFY=DELAY,FAILURE", Delay, Delayed, NotifyDelay | NotifyFailure},
		{"good1@dest.test", "NOTIFY=SUCCESS", Success, Relayed, NotifySuccess},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		s := p.Session(t)
		for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<alice@example.com>",
			strings.TrimSpace("RCPT TO:<" + c.rcpt + "> " + c.params), "DATA"} {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("%s: %s: %s", c.rcpt, cmd, r)
			}
		}
		r := s.Message("Subject: log line test\r\n\r\nhello\r\n")
		s.Close()
		_, id, ok := strings.Cut(r.String(), "queued as ")
		if r.Code != 250 || !ok {
			t.Fatalf("%s: end of data: %s", c.rcpt, r)
		}
		ids[i] = strings.TrimSpace(id)
	}
	line := regexp.MustCompile(`: ([0-9A-Za-z]+): ((?:sender|postmaster) [a-z -]+notification): [0-9A-Za-z]+\n`)
	for i, c := range cases {
		var wantPhrases []string
		m := &Message{QueueID: ids[i], Sender: "alice@example.com",
			Recipients: []Recipient{{Address: c.rcpt, Action: c.action, Notify: c.notify, Status: "5.1.1"}}}
		notices, err := settings.Notices(c.kind, m)
		if err != nil {
			t.Fatal(err)
		}
		for k := range notices {
			wantPhrases = append(wantPhrases, noticeLogText(&notices[k]))
		}
		slices.Sort(wantPhrases)
		var got []string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			got = got[:0]
			for _, sm := range line.FindAllStringSubmatch(p.Log(), -1) {
				if sm[1] == ids[i] {
					got = append(got, sm[2])
				}
			}
			if len(got) >= len(wantPhrases) {
				break
			}
		}
		slices.Sort(got)
		t.Logf("%s (%s): Postfix logged %q", c.rcpt, c.kind, got)
		if len(wantPhrases) == 0 || !slices.Equal(got, wantPhrases) {
			t.Errorf("%s (%s): Postfix logged %q, we log %q", c.rcpt, c.kind, got, wantPhrases)
		}
	}
}
