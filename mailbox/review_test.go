package mailbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// An mbox with a second name is refused and left alone (Postfix's
// safe_open: "file has 2 hard links"), so a delivery running as root
// cannot be steered into another file through a hard link.
func TestDeliverMboxRefusesHardLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mbox := filepath.Join(dir, "mbox")
	if err := os.Link(target, mbox); err != nil {
		t.Fatal(err)
	}
	err := DeliverMbox(context.Background(), mbox, "a@b", strings.NewReader("Subject: x\n\nbody\n"), MboxOptions{Create: true})
	if !errors.Is(err, ErrUnsafeFile) || !strings.Contains(err.Error(), "file has 2 hard links") {
		t.Fatalf("err = %v, want ErrUnsafeFile with the link count", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("linked file changed: %q", b)
	}
}

// Check sees the file as opened and locked, with whether this delivery
// created it; its error stops the delivery before anything is written.
func TestDeliverMboxCheck(t *testing.T) {
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	var calls []bool
	refuse := errors.New("not yours")
	opts := MboxOptions{Create: true, Check: func(st os.FileInfo, created bool) error {
		calls = append(calls, created)
		if !st.Mode().IsRegular() {
			t.Errorf("Check got %v", st.Mode())
		}
		if len(calls) == 2 {
			return refuse
		}
		return nil
	}}
	deliver := func() error {
		return DeliverMbox(context.Background(), mbox, "a@b", strings.NewReader("Subject: x\n\nbody\n"), opts)
	}
	if err := deliver(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(mbox)
	if err := deliver(); !errors.Is(err, refuse) {
		t.Fatalf("err = %v, want Check's", err)
	}
	if after, _ := os.ReadFile(mbox); string(after) != string(before) {
		t.Errorf("refused delivery wrote to the file")
	}
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Errorf("created flags %v, want [true false]", calls)
	}
}

// A reading session opened as root for a user (UID/GID set, as the IMAP
// and POP3 servers do) must not give the user a file their symbolic link
// or hard link names: the lock files are made with O_EXCL and only a file
// made here is chowned.
func TestLockFilesDoNotFollowLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	victim2 := filepath.Join(dir, "victim2")
	if err := os.WriteFile(victim2, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{md, md + "/new", md + "/cur", md + "/tmp"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, filepath.Join(md, UIDListName+".lock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim2, filepath.Join(md, SessionLockName)); err != nil {
		t.Fatal(err)
	}
	opts := MaildirOpenOptions{UID: 65534, GID: 65534}
	if m, err := OpenMaildir(context.Background(), md, opts); err == nil {
		if unlock, err := m.LockSession(); err == nil {
			unlock()
		}
	}
	for _, v := range []string{victim, victim2} {
		var st syscall.Stat_t
		if err := syscall.Stat(v, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s now belongs to %d:%d", filepath.Base(v), st.Uid, st.Gid)
		}
	}
}

// A message "file" in cur/ that is a symbolic link is not a message: a
// server running as root must not hand the user the file it points to.
func TestMaildirIgnoresSymlinkedMessages(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("Subject: root only\n\nsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{md, md + "/new", md + "/cur", md + "/tmp"} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(secret, filepath.Join(md, "cur", "1700000000.V1I2M3.host:2,S")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(md, "new", "1700000001.V1I3M3.host")); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMaildir(context.Background(), md, MaildirOpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if msgs := m.Messages(); len(msgs) != 0 {
		t.Errorf("symbolic links listed as messages: %+v", msgs)
		for _, msg := range msgs {
			if f, _, err := m.Open(context.Background(), msg.UID); err == nil {
				f.Close()
				t.Errorf("UID %d opened through the link", msg.UID)
			}
		}
	}
}

// The subscriptions file (and the other control files) are not read
// through a symbolic link: the lines of the file it points to would come
// back to the user as folder names (LSUB).
func TestSubscriptionsNotReadThroughLink(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("root:$6$salt$hash:19000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(filepath.Join(dir, "Maildir"), StoreOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(s.Root(), SubscriptionsName)); err != nil {
		t.Fatal(err)
	}
	subs, _ := s.Subscriptions()
	for _, n := range subs {
		if strings.Contains(n, "salt") {
			t.Errorf("linked file's line came back as a subscription: %q", n)
		}
	}
	if err := os.Symlink(secret, filepath.Join(s.Root(), KeywordsName)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("0 leaked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err := s.OpenFolder(context.Background(), Inbox, false); err == nil {
		if kw, _ := m.Keywords(); len(kw) > 0 {
			t.Errorf("keywords read through a link: %q", kw)
		}
	}
}

// Opened for a user by a server running as root, a Maildir (a folder,
// new/ or cur/) reached through a link the user planted that leads to
// someone else's directory is refused: otherwise ~/Maildir/.Leak -> /home/alice/Maildir would let
// the user read and change alice's mail.
func TestOpenForUserRefusesOthersMaildir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as another user")
	}
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice")
	if _, err := DeliverMaildir(context.Background(), alice, strings.NewReader("Subject: alice's\n\nx\n"), MaildirOptions{Create: true, UID: 1234, GID: 1234}); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(filepath.Join(dir, "bob"), StoreOptions{Create: true, UID: 65534, GID: 65534})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(alice, filepath.Join(s.Root(), ".Leak")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.OpenFolder(context.Background(), "Leak", false); err == nil {
		t.Errorf("opened alice's Maildir as bob's folder: %d messages", len(m.Messages()))
	}
	// The same through a link in place of ~/Maildir, or of its cur/.
	bob2 := filepath.Join(dir, "bob2")
	if err := os.Symlink(alice, bob2); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenMaildir(context.Background(), bob2, MaildirOpenOptions{UID: 65534, GID: 65534}); err == nil {
		t.Error("opened alice's Maildir through a link for uid 65534")
	}
	bob3 := filepath.Join(dir, "bob3")
	for _, d := range []string{bob3, bob3 + "/new", bob3 + "/tmp"} {
		os.Mkdir(d, 0o700)
	}
	if err := os.Symlink(alice+"/cur", bob3+"/cur"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenMaildir(context.Background(), bob3, MaildirOpenOptions{UID: 65534, GID: 65534}); err == nil {
		t.Error("opened alice's cur/ through a link for uid 65534")
	}
	if _, err := OpenMaildir(context.Background(), alice, MaildirOpenOptions{UID: 1234, GID: 1234}); err != nil {
		t.Errorf("alice's own: %v", err)
	}
}
