package imapserver

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/mailbox"
)

// Sessions selecting one mailbox share one open Maildir; each still gets
// its own updates: a delivery while three sessions idle reaches all
// three at once, \Recent goes to exactly one of them, a flag change by
// one shows to the others, and the shared state goes away with the last
// session.
func TestSharedMailbox(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	s, addr := e.start(t, opts)
	var rs []*rawIMAP
	for i := 0; i < 3; i++ {
		r := dialRaw(t, addr)
		r.cmd(t, "SELECT INBOX")
		rs = append(rs, r)
	}
	ex := dialRaw(t, addr)
	ex.cmd(t, "EXAMINE INBOX")
	boxes := func() (n, refs int) {
		s.boxMu.Lock()
		defer s.boxMu.Unlock()
		for _, b := range s.boxes {
			n++
			refs += b.refs
		}
		return
	}
	// SELECT and EXAMINE open the Maildir differently: two boxes.
	if n, refs := boxes(); n != 2 || refs != 4 {
		t.Fatalf("after 3 SELECTs and an EXAMINE: %d boxes, %d references", n, refs)
	}
	for _, r := range rs {
		r.c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(r.c, "i IDLE\r\n")
		if l, _ := r.br.ReadString('\n'); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
	}
	root := filepath.Join(e.home, "Maildir")
	if _, err := mailbox.DeliverMaildir(context.Background(), root, strings.NewReader("Subject: hi\n\nhello\n"), mailbox.MaildirOptions{Hub: e.hub}); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		l, err := r.br.ReadString('\n')
		if err != nil || l != "* 1 EXISTS\r\n" {
			t.Fatalf("session %d during IDLE: %q %v", i, l, err)
		}
		fmt.Fprintf(r.c, "DONE\r\n")
		for {
			l, err := r.br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(l, "i ") {
				break
			}
		}
	}
	recent := 0
	for _, r := range rs {
		got := r.lines(t, "FETCH 1 (FLAGS)")
		if strings.Contains(got, `\Recent`) {
			recent++
		}
	}
	if recent != 1 {
		t.Errorf("\\Recent shown to %d sessions, want 1", recent)
	}
	if got := ex.lines(t, "NOOP"); got != "* 1 EXISTS\r\n" {
		t.Errorf("EXAMINE session after the delivery: %q", got)
	}
	rs[0].cmd(t, `STORE 1 +FLAGS.SILENT (\Flagged)`)
	for i, r := range append(rs[1:], ex) {
		if got := r.lines(t, "NOOP"); !strings.Contains(got, `\Flagged`) {
			t.Errorf("session %d after another's STORE: %q", i+1, got)
		}
	}
	rs[2].cmd(t, "UNSELECT")
	if n, refs := boxes(); n != 2 || refs != 3 {
		t.Errorf("after UNSELECT: %d boxes, %d references", n, refs)
	}
	for _, r := range append(rs, ex) {
		r.cmd(t, "LOGOUT")
		r.c.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if n, _ := boxes(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			n, refs := boxes()
			t.Fatalf("after LOGOUT: %d boxes, %d references", n, refs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With a hub that cannot watch the file system, SELECT of a mailbox
// another session holds open still reads the directory: a message
// another process put there shows.
func TestSharedMailboxWithoutWatcher(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	hub := mailbox.NewHub(mailbox.HubOptions{Watch: mailbox.WatchNone})
	t.Cleanup(func() { hub.Close() })
	opts.Hub = hub
	_, addr := e.start(t, opts)
	a := dialRaw(t, addr)
	a.cmd(t, "SELECT INBOX")
	root := filepath.Join(e.home, "Maildir")
	// Delivered through a hub of its own: nobody here is told.
	quiet := mailbox.NewHub(mailbox.HubOptions{Watch: mailbox.WatchNone})
	t.Cleanup(func() { quiet.Close() })
	if _, err := mailbox.DeliverMaildir(context.Background(), root, strings.NewReader("Subject: quiet\n\nx\n"), mailbox.MaildirOptions{Hub: quiet}); err != nil {
		t.Fatal(err)
	}
	b := dialRaw(t, addr)
	if got := b.lines(t, "SELECT INBOX"); !strings.Contains(got, "* 1 EXISTS") {
		t.Errorf("second SELECT: %q", got)
	}
}

// A mailbox whose sessions all idle lets go of its message list after
// IdleHibernate and reads it again for the next change: a delivery
// still reaches the idling client, and the session works after DONE.
func TestIdleHibernate(t *testing.T) {
	e := newEnv(t)
	opts := e.options()
	opts.IdleHibernate = 20 * time.Millisecond
	s, addr := e.start(t, opts)
	r := dialRaw(t, addr)
	msg := "Subject: one\r\n\r\nx\r\n"
	r.cmd(t, fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	r.cmd(t, "SELECT INBOX")
	hibernating := func() bool {
		s.boxMu.Lock()
		defer s.boxMu.Unlock()
		for _, b := range s.boxes {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.md == nil
		}
		t.Fatal("no mailbox open")
		return false
	}
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(r.c, "i IDLE\r\n")
	if l, _ := r.br.ReadString('\n'); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	for deadline := time.Now().Add(5 * time.Second); !hibernating(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the mailbox did not hibernate")
		}
	}
	root := filepath.Join(e.home, "Maildir")
	if _, err := mailbox.DeliverMaildir(context.Background(), root, strings.NewReader("Subject: two\n\ny\n"), mailbox.MaildirOptions{Hub: e.hub}); err != nil {
		t.Fatal(err)
	}
	if l, err := r.br.ReadString('\n'); err != nil || l != "* 2 EXISTS\r\n" {
		t.Fatalf("during IDLE: %q %v", l, err)
	}
	for deadline := time.Now().Add(5 * time.Second); !hibernating(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the mailbox did not hibernate again")
		}
	}
	fmt.Fprintf(r.c, "DONE\r\n")
	if l, err := r.br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "i OK") {
		t.Fatalf("DONE: %q %v", l, err)
	}
	if hibernating() {
		t.Error("the mailbox hibernates with a session out of IDLE")
	}
	got := r.lines(t, "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !strings.Contains(got, "Subject: one") || !strings.Contains(got, "Subject: two") {
		t.Errorf("after IDLE: %q", got)
	}
	r.cmd(t, `STORE 2 +FLAGS (\Seen)`)
}
