package local

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/queue"
)

// A user's .forward may not make the agent (root) read a file the user
// cannot read: Postfix opens :include: files and .forward with the
// user's rights (open_as), so the lines of a root-only file never become
// addresses that end up in a bounce or a forwarded copy.
func TestIncludeOpenedWithUserRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the file must be unreadable for the recipient but readable for the agent")
	}
	h := newHarness(t, "home_mailbox = Maildir/\n", "")
	secret := h.dir + "/files/secret"
	writeFile(t, secret, "secret-line@far.example\n", 0o600) // root's, mode 0600
	writeFile(t, h.dir+"/home/bob/.forward", ":include:"+secret+"\n", 0o644)
	res := h.deliver(testMessage, "attacker@far.example", "bob@example.net")
	want(t, res[0], queue.Failed, "5.3.5", "mail system configuration error")
	for _, q := range h.queued() {
		if strings.Contains(q.rcpts(), "secret-line") {
			t.Errorf("root-only file's content forwarded: %s", q.rcpts())
		}
	}
	if !strings.Contains(h.logs.String(), "cannot open include file "+secret+": Permission denied") {
		t.Errorf("no warning:\n%s", h.logs)
	}
}

// A user who replaces tmp/ of the Maildir in their home with a link to a
// directory only root may write must not get the agent (root) to create
// files there: Postfix delivers to a home Maildir with the user's rights.
func TestHomeMaildirWithUserRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent must be able to write where the recipient cannot")
	}
	h := newHarness(t, "home_mailbox = Maildir/\n", "")
	rootOnly := h.dir + "/rootonly"
	if err := os.Mkdir(rootOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	md := h.dir + "/home/bob/Maildir"
	for _, d := range []string{md, md + "/new", md + "/cur"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		uid, gid := testIDs()
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(rootOnly, md+"/tmp"); err != nil {
		t.Fatal(err)
	}
	res := h.deliver(testMessage, "a@x", "bob@example.net")
	if res[0].Outcome == queue.Delivered || res[0].DSN != "5.2.0" {
		t.Errorf("result %+v, want a 5.2.0 failure", res[0])
	}
	if ents, _ := os.ReadDir(rootOnly); len(ents) != 0 {
		t.Errorf("root-only directory got %d files", len(ents))
	}
}

// The same for a home mbox and a /file destination of a .forward: Postfix
// opens them with the user's rights, so a path through a directory the
// user may not enter (or a link the user planted) is refused.
func TestHomeMboxAndFileWithUserRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent must be able to write where the recipient cannot")
	}
	h := newHarness(t, "home_mailbox = sub/Mailbox\n", "")
	rootOnly := h.dir + "/rootonly"
	if err := os.MkdirAll(rootOnly+"/pub", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rootOnly+"/pub", 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rootOnly, h.dir+"/home/bob/sub"); err != nil {
		t.Fatal(err)
	}
	res := h.deliver(testMessage, "a@x", "bob@example.net")
	if res[0].Outcome == queue.Delivered {
		t.Errorf("home mbox through a link: %+v", res[0])
	}
	target := rootOnly + "/pub/file"
	writeFile(t, h.dir+"/home/carol/.forward", target+"\n", 0o644)
	want(t, h.deliver(testMessage, "a@x", "carol@example.net")[0], queue.Failed, "5.2.0",
		"cannot append message to file "+target+": cannot open file: Permission denied")
	if ents, _ := os.ReadDir(rootOnly); len(ents) != 1 {
		t.Errorf("root-only directory has %d entries, want only pub/", len(ents))
	}
	if _, err := os.Stat(target); err == nil {
		t.Errorf("%s was created", target)
	}
}

// The From_ line a command reads carries the sender in external form, as
// Postfix's mail_copy() writes it (quote_822_local): a local part with a
// space must not split the line's fields.
func TestCommandFromLineQuotesSender(t *testing.T) {
	h := newHarness(t, `mailbox_command = /bin/sh -c 'cat > "$HOME/mc.out"'`+"\n", "")
	want(t, h.deliver(testMessage, "john doe@x.example", "bob@example.net")[0], queue.Delivered, "2.0.0",
		"delivered to command: "+h.agent.p.mailboxCommand)
	first, _, _ := strings.Cut(read(t, h.dir+"/home/bob/mc.out"), "\n")
	if !strings.HasPrefix(first, `From "john doe"@x.example  `) {
		t.Errorf("From_ line %q", first)
	}
}

// An :include: file that is a FIFO must not hang the delivery: the open
// of a FIFO for reading waits for a writer, so nothing may be opened in a
// way that blocks before the "regular file" check.
func TestIncludeFIFODoesNotHang(t *testing.T) {
	h := newHarness(t, "home_mailbox = Maildir/\n", "")
	fifo := h.dir + "/home/bob/list"
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	uid, gid := testIDs()
	os.Chown(fifo, uid, gid)
	writeFile(t, h.dir+"/home/bob/.forward", ":include:"+fifo+"\n", 0o644)
	done := make(chan queue.Result, 1)
	go func() { done <- h.deliver(testMessage, "a@x", "bob@example.net")[0] }()
	select {
	case r := <-done:
		if r.Outcome != queue.Failed {
			t.Errorf("%+v, want a bounce", r)
		}
	case <-time.After(5 * time.Second):
		// Unblock the agent so the test can end.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatal("delivery hung opening a FIFO")
	}
}
