package queue

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
)

var quiet = slog.New(slog.DiscardHandler)

func openTest(t testing.TB, dir string, opts Options) *Queue {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	q, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testEnvelope(n int) *cleanup.Envelope {
	env := &cleanup.Envelope{
		Arrival: time.Date(2026, 11, 28, 4, 0, 0, 123456789, time.UTC),
		Sender:  "alice@example.com",
		Size:    0,
		Body:    "8BITMIME", Ret: "HDRS", EnvID: "env-1", SMTPUTF8: true,
		Filter: "smtp:[127.0.0.1]:10025", Redirect: "",
		MessageID: "<m1@example.com>",
		Client: cleanup.ClientInfo{Name: "mail.example.org", Addr: "192.0.2.1", Port: 4321,
			Helo: "mail.example.org", Proto: "ESMTPSA", SASLMethod: "PLAIN", SASLUsername: "alice",
			ServerAddr: "192.0.2.25"},
	}
	for i := range n {
		env.Recipients = append(env.Recipients, cleanup.Recipient{
			Addr: "rcpt" + string(rune('a'+i%26)) + "@example.net", Original: "Rcpt@Example.NET",
			Notify: []string{"SUCCESS", "FAILURE"}, ORCPT: "rfc822;rcpt@example.net"})
	}
	return env
}

const testContent = "From: alice@example.com\r\nSubject: hi\r\n\r\nbody line 1\r\nbody line 2\r\n"

// commit writes content and commits env, returning the ID.
func commit(t testing.TB, q *Queue, content string, env *cleanup.Envelope) string {
	t.Helper()
	ctx := context.Background()
	f, err := q.Create(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Several writes, to cross the buffer and split the header boundary.
	for len(content) > 0 {
		n := min(len(content), 7)
		if _, err := f.Write([]byte(content[:n])); err != nil {
			t.Fatal(err)
		}
		content = content[n:]
	}
	if err := f.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	return f.ID()
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// names lists the files in a state directory, temporary ones included.
func names(t testing.TB, q *Queue, s State) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(q.Dir(), string(s)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
