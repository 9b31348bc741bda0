package imapserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/mailbox"
)

// A change made by one session reaches another selected on the same
// mailbox: flags at the next command, the expunge at the next command
// that allows it (not during FETCH).
func TestTwoSessions(t *testing.T) {
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	for i := 0; i < 2; i++ {
		msg := fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)
		a.cmd(t, fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	}
	a.cmd(t, "SELECT INBOX")
	b.cmd(t, "SELECT INBOX")
	b.cmd(t, `STORE 1 +FLAGS.SILENT (\Deleted)`)
	if got := a.lines(t, "NOOP"); !strings.Contains(got, `* 1 FETCH (FLAGS (\Deleted`) {
		t.Errorf("flag change not seen: %q", got)
	}
	b.cmd(t, "EXPUNGE")
	if got := a.lines(t, "FETCH 1 (FLAGS)"); strings.Contains(got, "EXPUNGE") {
		t.Errorf("EXPUNGE sent during FETCH: %q", got)
	}
	if got := a.lines(t, "NOOP"); !strings.Contains(got, "* 1 EXPUNGE") {
		t.Errorf("expunge not seen: %q", got)
	}
	if got := a.lines(t, "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); !strings.Contains(got, "Subject: 1") {
		t.Errorf("after expunge: %q", got)
	}
}

// APPEND beyond AppendLimit is refused before the literal is sent.
func TestAppendLimit(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.AppendLimit = 1000
	_, addr := e.start(t, opts)
	r := dialRaw(t, addr)
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(r.c, "a APPEND INBOX {5000}\r\n")
	l, _ := r.br.ReadString('\n')
	if !strings.HasPrefix(l, "a NO") || !strings.Contains(l, "TOOBIG") {
		t.Errorf("oversized APPEND: %q", l)
	}
	if got := r.lines(t, "STATUS INBOX (MESSAGES)"); !strings.Contains(got, "MESSAGES 0") {
		t.Errorf("after refused APPEND: %q", got)
	}
}

// Shutdown waits for sessions, then gives up when the context ends.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	s, addr := e.start(t, e.options())
	r := dialRaw(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown with a session open: %v", err)
	}
	r.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.br.ReadString('\n'); err == nil {
		t.Errorf("session still open after Shutdown gave up")
	}

	e2 := newEnv(t)
	s2, addr2 := e2.start(t, e2.options())
	r2 := dialRaw(t, addr2)
	go func() { time.Sleep(100 * time.Millisecond); fmt.Fprintf(r2.c, "x LOGOUT\r\n") }()
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after the client logged out: %v", err)
	}
}

// A lost uidlist (new UIDVALIDITY) under a selected mailbox ends the
// session: the client's UIDs no longer mean anything.
func TestUIDValidityChangeEndsSession(t *testing.T) {
	e := newEnv(t)
	_, addr := e.start(t, e.options())
	r := dialRaw(t, addr)
	msg := "Subject: x\r\n\r\nx\r\n"
	r.cmd(t, fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	r.cmd(t, "SELECT INBOX")
	root := filepath.Join(e.home, "Maildir")
	if err := os.Remove(filepath.Join(root, mailbox.UIDListName)); err != nil {
		t.Fatal(err)
	}
	e.hub.Notify(mailbox.Event{Kind: mailbox.EventNew, Mailbox: root})
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(r.c, "n NOOP\r\n")
	all := ""
	for {
		l, err := r.br.ReadString('\n')
		all += l
		if err != nil {
			break
		}
	}
	if !strings.Contains(all, "* BYE") {
		t.Errorf("after a new UIDVALIDITY: %q", all)
	}
}
