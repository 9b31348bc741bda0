package bounce

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
)

// queueSubmitter commits notices straight into a queue, as cleanup will,
// on hold so that the scheduler leaves them there to be looked at.
func queueSubmitter(q *queue.Queue) Submitter {
	return SubmitterFunc(func(ctx context.Context, n *Notice) error {
		f, err := q.Create(ctx, time.Time{})
		if err != nil {
			return err
		}
		if _, err := f.Write(n.Data); err != nil {
			f.Abort()
			return err
		}
		env := &cleanup.Envelope{QueueID: f.ID(), Sender: n.Sender, Size: int64(len(n.Data)),
			Recipients: []cleanup.Recipient{{Addr: n.Recipient}}, SMTPUTF8: n.SMTPUTF8, Hold: true}
		if n.Encoding == Encoding8Bit {
			env.Body = "8BITMIME"
		}
		return f.Commit(ctx, env)
	})
}

const badReply = "550 5.1.1 <bad@example.org>: Recipient address rejected: User unknown"

// testDeliverer bounces bad* recipients as a remote server would,
// delivers good* ones and defers everything else (so the notices stay
// queued to be looked at).
var testDeliverer = queue.DelivererFunc(func(_ context.Context, d *queue.Delivery) []queue.Result {
	var res []queue.Result
	for _, r := range d.Recipients {
		switch {
		case strings.HasPrefix(r.Addr, "bad"):
			res = append(res, queue.Result{Outcome: queue.Failed, DSN: "5.1.1",
				Relay:  "mx.example.org[192.0.2.1]:25",
				Reason: "host mx.example.org[192.0.2.1] said: " + badReply + " (in reply to RCPT TO command)"})
		case strings.HasPrefix(r.Addr, "good"):
			res = append(res, queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "mx.example.org[192.0.2.1]:25",
				Reason: "250 2.0.0 Ok"})
		default:
			res = append(res, queue.Result{Outcome: queue.Delayed, DSN: "4.4.1", Site: true,
				Reason: "connect to mx.example.org[192.0.2.1]:25: Connection refused"})
		}
	}
	return res
})

type queuedNotice struct {
	sender, rcpt, data string
}

func TestNotifierWithScheduler(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	content := "From: alice@example.com\r\nTo: bad@example.org\r\nSubject: hello\r\n\r\nthe body\r\n"
	tests := []struct {
		name    string
		sender  string
		rcpts   []string
		notify  []string
		classes []string
		// lifetime is maximal_queue_lifetime; negative: one attempt.
		lifetime time.Duration
		want     []queuedNotice // data: substrings of the notice, separated by "|"
	}{
		{name: "5xx bounces to the sender", sender: "alice@example.com",
			rcpts: []string{"bad@example.org", "good@example.org"},
			want: []queuedNotice{{sender: "", rcpt: "alice@example.com", data: strings.Join([]string{
				"From: Mail Delivery System <MAILER-DAEMON@mail.example.net>\r\n",
				"Subject: Undelivered Mail Returned to Sender\r\n",
				"To: alice@example.com\r\n",
				"Content-Type: multipart/report; report-type=delivery-status;",
				"Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n",
				"Reporting-MTA: dns; mail.example.net\r\nX-Postfix-Queue-ID: QUEUEID\r\nX-Postfix-Sender: rfc822; alice@example.com\r\nArrival-Date: Sat, 28 Nov 2026 06:00:00 +0000 (UTC)\r\n",
				"Final-Recipient: rfc822; bad@example.org\r\nOriginal-Recipient: rfc822;bad@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 550 5.1.1 <bad@example.org>: Recipient address rejected:\r\n    User unknown\r\n",
				"Content-Type: message/rfc822\r\n",
				"Subject: hello\r\n\r\nthe body\r\n",
			}, "|")}}},
		{name: "expiry bounces with the 4xx status", sender: "alice@example.com",
			rcpts: []string{"slow@example.org"}, lifetime: -1,
			want: []queuedNotice{{sender: "", rcpt: "alice@example.com", data: strings.Join([]string{
				"Final-Recipient: rfc822; slow@example.org\r\n",
				"Action: failed\r\nStatus: 4.4.1\r\n",
				"Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.1]:25: Connection\r\n    refused\r\n",
			}, "|")}}},
		{name: "NOTIFY=NEVER gets nothing", sender: "alice@example.com", rcpts: []string{"bad@example.org"},
			notify: []string{"NEVER"}},
		{name: "null sender gets nothing", sender: "", rcpts: []string{"bad@example.org"}},
		{name: "null sender: double bounce with 2bounce", sender: "", rcpts: []string{"bad@example.org"},
			classes: []string{"2bounce"},
			want: []queuedNotice{{sender: "double-bounce@mail.example.net", rcpt: "postmaster@mail.example.net", data: strings.Join([]string{
				"Subject: Postmaster Copy: Undelivered Mail\r\n",
				"To: postmaster@mail.example.net\r\n",
				"X-Postfix-Sender: rfc822; MAILER-DAEMON@mail.example.net\r\n",
				"Content-Type: message/rfc822\r\n",
				"Final-Recipient: rfc822; bad@example.org\r\n",
				"Action: failed\r\nStatus: 5.1.1\r\n",
			}, "|")}}},
		{name: "bounce class copies the postmaster", sender: "alice@example.com", rcpts: []string{"bad@example.org"},
			classes: []string{"bounce"},
			want: []queuedNotice{
				{sender: "", rcpt: "alice@example.com", data: "Status: 5.1.1\r\n"},
				{sender: "double-bounce@mail.example.net", rcpt: "postmaster@mail.example.net",
					data: "Subject: Postmaster Copy: Undelivered Mail\r\n|Content-Type: text/rfc822-headers\r\n"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clk := queue.NewFakeClock(t0)
			quiet := slog.New(slog.DiscardHandler)
			if testing.Verbose() {
				quiet = slog.Default()
			}
			q, err := queue.Open(t.TempDir(), queue.Options{Clock: clk, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			settings := Defaults("mail.example.net")
			settings.Location = time.UTC
			settings.Now = clk.Now
			if tc.classes != nil {
				settings.NotifyClasses = tc.classes
			}
			nf := NewNotifier(settings, queueSubmitter(q))
			nf.Logger = quiet
			s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: testDeliverer, Notifier: nf,
				Clock: clk, Logger: quiet, MaxQueueLifetime: tc.lifetime})
			if err != nil {
				t.Fatal(err)
			}
			s.Start()
			defer s.Stop(ctx)

			f, err := q.Create(ctx, t0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(f, content); err != nil {
				t.Fatal(err)
			}
			env := &cleanup.Envelope{QueueID: f.ID(), Arrival: t0, Sender: tc.sender, Size: int64(len(content))}
			for _, r := range tc.rcpts {
				env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: r, Notify: tc.notify})
			}
			orig := f.ID()
			if err := f.Commit(ctx, env); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := s.Sync(ctx); err != nil {
					t.Fatal(err)
				}
			}

			var got []queuedNotice
			for _, st := range queue.States {
				ents, err := q.List(st)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if e.ID == orig {
						t.Errorf("the original is still queued (%s)", st)
						continue
					}
					if st != queue.Hold {
						t.Errorf("message %s in %s: only the original and the held notices should exist", e.ID, st)
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
					got = append(got, queuedNotice{m.Envelope.Sender, m.Envelope.Recipients[0].Addr, string(data)})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d notices queued, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					if g.sender != w.sender || g.rcpt != w.rcpt {
						continue
					}
					found = true
					if strings.Contains(g.data, "Final-Recipient: rfc822; good@") {
						t.Errorf("the delivered recipient is in the notice:\n%s", g.data)
					}
					for sub := range strings.SplitSeq(strings.ReplaceAll(w.data, "QUEUEID", orig), "|") {
						if !strings.Contains(g.data, sub) {
							t.Errorf("notice from <%s> to <%s> lacks %q:\n%s", w.sender, w.rcpt, sub, g.data)
						}
					}
				}
				if !found {
					t.Errorf("no notice from <%s> to <%s>; got %+v", w.sender, w.rcpt, got)
				}
			}
		})
	}
}

func TestNotifierMapping(t *testing.T) {
	tests := []struct {
		relay, reason, wantMTA, wantDiag string
	}{
		{"mx.example.org[192.0.2.1]:25", "host mx.example.org[192.0.2.1] said: 550 5.1.1 no (in reply to RCPT TO command)", "mx.example.org", "smtp; 550 5.1.1 no"},
		{"[192.0.2.1]:25", "550 5.7.1 denied", "192.0.2.1", "smtp; 550 5.7.1 denied"},
		{"local", "mailbox full", "", ""},
		{"mx.example.org[192.0.2.1]:25", "lost connection with mx.example.org", "mx.example.org", ""},
		{"", "unknown user", "", ""},
	}
	for _, tc := range tests {
		r := recipientOf(Failure, "a@b", "a@b", "", nil, queue.Status{Relay: tc.relay, Reason: tc.reason})
		if r.RemoteMTA != tc.wantMTA || r.DiagnosticCode != tc.wantDiag || r.Status != "5.0.0" || r.Action != Failed {
			t.Errorf("relay %q reason %q: got %+v", tc.relay, tc.reason, r)
		}
	}
	if got := xtextDecode("rfc822;a+2Bb@example.org"); got != "rfc822;a+b@example.org" {
		t.Errorf("xtextDecode = %q", got)
	}
	r := recipientOf(Success, "a@b", "A@B", "", []string{"SUCCESS"}, queue.Status{Outcome: queue.Delivered, Action: "relayed"})
	if r.Action != Relayed || r.Original != "A@B" || r.Notify != NotifySuccess || r.Status != "2.0.0" {
		t.Errorf("success mapping: %+v", r)
	}
}

// A Submitter's error comes back from Notify (the scheduler then keeps
// the original and tries again), and the original is read through the
// queue's opener only as far as needed.
func TestNotifierErrors(t *testing.T) {
	boom := errors.New("queue full")
	content := "Subject: x\r\n\r\n" + strings.Repeat("b", 100000)
	opened := 0
	qn := &queue.Notice{Kind: queue.FailureNotice, QueueID: "4jc04J0000z1SPyx",
		Envelope: &cleanup.Envelope{Sender: "a@example.com", Size: int64(len(content)),
			Recipients: []cleanup.Recipient{{Addr: "bad@example.org"}}},
		Statuses:   []queue.Status{{Rcpt: 0, Outcome: queue.Failed, DSN: "5.1.1", Reason: "no"}},
		Recipients: []int{0},
		Open: func() (io.ReadCloser, error) {
			opened++
			return io.NopCloser(strings.NewReader(content)), nil
		}}
	var sent []*Notice
	nf := NewNotifier(Defaults("mail.example.net"), SubmitterFunc(func(_ context.Context, n *Notice) error {
		sent = append(sent, n)
		return boom
	}))
	nf.Logger = slog.New(slog.DiscardHandler)
	if err := nf.Notify(context.Background(), qn); !errors.Is(err, boom) {
		t.Fatalf("Notify = %v, want the Submitter's error", err)
	}
	if len(sent) != 1 || opened != 1 {
		t.Fatalf("%d notices submitted, content opened %d times", len(sent), opened)
	}
	// Over bounce_size_limit: the headers only.
	if d := string(sent[0].Data); !strings.Contains(d, "Content-Type: text/rfc822-headers") || strings.Contains(d, "bbbb") {
		t.Errorf("a large original should come back as headers only:\n%s", d)
	}
	qn.Kind = 0
	if err := nf.Notify(context.Background(), qn); !errors.Is(err, ErrBadMessage) {
		t.Errorf("a bad kind: %v", err)
	}
	qn.Kind, qn.Recipients = queue.FailureNotice, []int{3}
	if err := nf.Notify(context.Background(), qn); !errors.Is(err, ErrBadMessage) {
		t.Errorf("a bad recipient index: %v", err)
	}
}

// The queue's recorded relay and reason texts and the ENVID/ORCPT xtext
// come from remote servers and clients: the mapping must not panic on
// any of them.
func FuzzNotifierMapping(f *testing.F) {
	f.Add("mx.example.org[192.0.2.1]:25", "host mx said: 550 5.1.1 no (in reply to RCPT TO command)", "rfc822;a+2Bb@x")
	f.Add("[", "said: ", "+")
	f.Add("]", "550", "+4")
	f.Add("[]", " said: 5", "++41")
	f.Fuzz(func(t *testing.T, relay, reason, xtext string) {
		r := recipientOf(Failure, "a@b", "c@d", xtext, []string{reason}, queue.Status{Relay: relay, Reason: reason})
		if r.DiagnosticCode != "" && !strings.HasPrefix(r.DiagnosticCode, "smtp; ") {
			t.Errorf("diagnostic code %q", r.DiagnosticCode)
		}
	})
}
