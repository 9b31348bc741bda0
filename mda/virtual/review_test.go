package virtual_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/postkit-mail/postkit/queue"
)

// A Maildir whose tmp/ was replaced with a link to a directory only root
// may write (by anything running with the mailbox owner's rights, an IMAP
// server for example) must not get the agent (root) to write there:
// Postfix's virtual(8) stores with the uid and gid of the tables.
func TestMaildirWithTableRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent must be able to write where uid 5000 cannot")
	}
	a, base := setup(t, "")
	rootOnly := filepath.Join(filepath.Dir(base), "rootonly")
	if err := os.Mkdir(rootOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(base, "v.test/bob/Maildir")
	for _, d := range []string{filepath.Dir(md), md, md + "/new", md + "/cur"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 5000, 5000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(rootOnly, md+"/tmp"); err != nil {
		t.Fatal(err)
	}
	r := a.Deliver(context.Background(), request("alice@x.test", message, rcpt("bob@v.test", "")))[0]
	if r.Outcome == queue.Delivered {
		t.Errorf("delivered through the link: %+v", r)
	}
}

// ownBase makes the mailbox base what a real one is when the test runs as
// root: base and the given directories under it belong to the uid and gid
// of the tables (the agent stores with those rights, as virtual(8) does),
// and the test's temporary directories can be entered.
func ownBase(t testing.TB, base string, uid int, dirs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for d := filepath.Dir(base); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	for _, d := range append([]string{base}, dirs...) {
		if err := os.Chown(d, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

// The mbox failure text does not depend on where the base is: a base
// under a directory named tmp is not a Maildir.
func TestMboxOpenFailureText(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the mbox must be unwritable for uid 5000 only")
	}
	a, base := setup(t, "")
	mbox := filepath.Join(base, "v.test/carol.mbox")
	if err := os.WriteFile(mbox, nil, 0o600); err != nil { // root's
		t.Fatal(err)
	}
	r := a.Deliver(context.Background(), request("alice@x.test", message, rcpt("carol@v.test", "")))[0]
	if want := "delivery failed to mailbox " + mbox + ": cannot open file: Permission denied"; r.Outcome != queue.Delayed || r.DSN != "4.2.0" || r.Reason != want {
		t.Errorf("%+v, want 4.2.0 %q", r, want)
	}
}
