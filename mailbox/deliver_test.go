package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var postfixName = regexp.MustCompile(`^(\d+)\.V([0-9a-f]+)I([0-9a-f]+)M(\d+)\.(.+)$`)

func TestDeliverMaildirName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	when := time.Unix(1732640461, 123456789)
	msg := "Return-Path: <a@example.com>\nSubject: x\n\nFrom me\nbody\n"
	p, err := DeliverMaildir(context.Background(), dir, strings.NewReader(msg), MaildirOptions{Create: true, Hostname: "mail.example.com", Time: when})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != filepath.Join(dir, "new") {
		t.Fatalf("delivered to %s, want new/", p)
	}
	m := postfixName.FindStringSubmatch(filepath.Base(p))
	if m == nil {
		t.Fatalf("name %q is not SECONDS.VdevIinoMusec.HOST", filepath.Base(p))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if m[1] != "1732640461" || m[4] != "123456" || m[5] != "mail.example.com" {
		t.Errorf("name %q: want seconds 1732640461, usec 123456, host mail.example.com", filepath.Base(p))
	}
	if m[2] != fmt.Sprintf("%x", st.Dev) || m[3] != fmt.Sprintf("%x", st.Ino) {
		t.Errorf("name %q: V%s I%s, file has dev %x ino %x", filepath.Base(p), m[2], m[3], st.Dev, st.Ino)
	}
	got, _ := os.ReadFile(p)
	if string(got) != msg {
		t.Errorf("content %q, want %q (Maildir stores the message as is)", got, msg)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", d, fi, err)
		}
	}
	if names, _ := readNames(filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ not empty: %v", names)
	}
}

func TestDeliverMaildirHostnameEscape(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	p, err := DeliverMaildir(context.Background(), dir, strings.NewReader("x\n"), MaildirOptions{Create: true, Hostname: "we/ird:host"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, `.we\057ird\072host`) || filepath.Dir(p) != filepath.Join(dir, "new") {
		t.Errorf("path %q: want the host escaped as we\\057ird\\072host inside new/", p)
	}
}

func TestDeliverMaildirErrors(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "Maildir")
	if _, err := DeliverMaildir(ctx, dir, strings.NewReader("x\n"), MaildirOptions{}); err == nil {
		t.Fatal("delivery to a missing maildir without Create succeeded")
	}
	big := strings.Repeat("x", 1000) + "\n"
	if _, err := DeliverMaildir(ctx, dir, strings.NewReader(big), MaildirOptions{Create: true, SizeLimit: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("1001 bytes with limit 1000: %v, want ErrTooLarge", err)
	}
	for _, d := range []string{"tmp", "new"} {
		if names, _ := readNames(filepath.Join(dir, d)); len(names) != 0 {
			t.Errorf("after a failed delivery %s/ holds %v", d, names)
		}
	}
	if _, err := DeliverMaildir(ctx, dir, strings.NewReader(big[:1000]), MaildirOptions{SizeLimit: 1000}); err != nil {
		t.Errorf("exactly the limit: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := DeliverMaildir(cctx, dir, strings.NewReader("x\n"), MaildirOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestDeliverMaildirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := filepath.Join(t.TempDir(), "Maildir")
	p, err := DeliverMaildir(context.Background(), dir, strings.NewReader("x\n"), MaildirOptions{Create: true, UID: 65534, GID: 65534})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p, dir, filepath.Join(dir, "new"), filepath.Join(dir, "cur"), filepath.Join(dir, "tmp")} {
		var st syscall.Stat_t
		syscall.Stat(f, &st)
		if st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s owned by %d:%d, want 65534:65534", f, st.Uid, st.Gid)
		}
	}
}

func TestDeliverMaildirConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	when := time.Now() // one clock value for all: only dev/inode make names unique
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := DeliverMaildir(ctx, dir, strings.NewReader(testMessage(fmt.Sprint("g", w), i)), MaildirOptions{Create: true, Time: when})
				errs <- err
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	names, _ := readNames(filepath.Join(dir, "new"))
	if len(names) != workers*each {
		t.Fatalf("%d files in new/, want %d", len(names), workers*each)
	}
	seen := map[string]bool{}
	for _, n := range names {
		data, _ := os.ReadFile(filepath.Join(dir, "new", n))
		seen[string(data)] = true
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct messages, want %d", len(seen), workers*each)
	}
}

func TestFromLine(t *testing.T) {
	when := time.Date(2024, 11, 6, 7, 1, 1, 0, time.UTC)
	for _, c := range []struct{ sender, want string }{
		{"alice@example.com", "From alice@example.com  Wed Nov  6 07:01:01 2024"},
		{"", "From MAILER-DAEMON  Wed Nov  6 07:01:01 2024"},
		{"a b@example.com", `From "a b"@example.com  Wed Nov  6 07:01:01 2024`},
	} {
		if got := FromLine(c.sender, when); got != c.want {
			t.Errorf("FromLine(%q) = %q, want %q", c.sender, got, c.want)
		}
	}
}

func TestDeliverMboxFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	when := time.Date(2024, 11, 26, 17, 1, 1, 0, time.UTC)
	msg1 := "Subject: one\n\nFrom the start\n>From already quoted\n From indented\nFromage\nFrom"
	if err := DeliverMbox(ctx, path, "alice@example.com", strings.NewReader(msg1), MboxOptions{Create: true, Time: when}); err != nil {
		t.Fatal(err)
	}
	msg2 := "Subject: two\n\nbody\n"
	if err := DeliverMbox(ctx, path, "", strings.NewReader(msg2), MboxOptions{Time: when}); err != nil {
		t.Fatal(err)
	}
	want := "From alice@example.com  Tue Nov 26 17:01:01 2024\n" +
		"Subject: one\n\n>From the start\n>From already quoted\n From indented\nFromage\nFrom\n\n" +
		"From MAILER-DAEMON  Tue Nov 26 17:01:01 2024\n" +
		"Subject: two\n\nbody\n\n"
	got, _ := os.ReadFile(path)
	if string(got) != want {
		t.Errorf("mbox:\n%q\nwant\n%q", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
	if err := DeliverMbox(ctx, filepath.Join(t.TempDir(), "missing"), "a@b", strings.NewReader("x\n"), MboxOptions{}); err == nil {
		t.Error("delivery to a missing mbox without Create succeeded")
	}
}

func TestDeliverMboxSizeLimitTruncates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	if err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("Subject: a\n\nsmall\n"), MboxOptions{Create: true}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	big := strings.Repeat("0123456789\n", 20000) // 220 KB: several buffer flushes before the limit trips
	err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader(big), MboxOptions{SizeLimit: 100000})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("mbox changed by a failed delivery: %d bytes, had %d", len(after), len(before))
	}
	// A read error half-way also truncates back.
	err = DeliverMbox(ctx, path, "a@example.com", &failingReader{data: []byte(big[:70000])}, MboxOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("failing reader: %v", err)
	}
	after, _ = os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("mbox changed by a failed read: %d bytes, had %d", len(after), len(before))
	}
}

type failingReader struct{ data []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestDeliverMboxDotlock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	lock := path + ".lock"
	if err := os.WriteFile(lock, nil, 0); err != nil {
		t.Fatal(err)
	}
	opts := MboxOptions{Create: true, Locks: []string{"dotlock"}, LockAttempts: 3, LockDelay: 10 * time.Millisecond}
	err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("x\n"), opts)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("fresh lock file: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("a fresh lock file was removed: %v", err)
	}
	// The same file counts as stale once its ctime is older than StaleLockTime.
	time.Sleep(30 * time.Millisecond)
	opts.StaleLockTime = 20 * time.Millisecond
	if err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("x\n"), opts); err != nil {
		t.Fatalf("stale lock file: %v", err)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("lock file not removed after delivery: %v", err)
	}
	got, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(got), "\nx\n\n") {
		t.Errorf("mbox %q", got)
	}
}

func TestDeliverMboxKernelLocks(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ mode, method string }{{"hold-flock", "flock"}, {"hold-fcntl", "fcntl"}} {
		t.Run(c.method, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mbox")
			release := holdLock(t, c.mode, path)
			opts := MboxOptions{Locks: []string{c.method}, LockAttempts: 3, LockDelay: 10 * time.Millisecond}
			err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("x\n"), opts)
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("%s lock held by another process: %v, want ErrLocked", c.method, err)
			}
			release()
			if err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("x\n"), opts); err != nil {
				t.Fatalf("after release: %v", err)
			}
		})
	}
}

func TestDeliverMboxConcurrent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	const workers, each, procEach = 6, 15, 30
	proc := startHelper(t, "deliver-mbox", path, fmt.Sprint(procEach), "proc")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			locks := [][]string{nil, {"fcntl"}, {"flock"}, {"dotlock", "fcntl", "flock"}}[w%4]
			for i := 0; i < each; i++ {
				errs <- DeliverMbox(ctx, path, "g@example.com", strings.NewReader(testMessage(fmt.Sprint("g", w), i)),
					MboxOptions{Create: true, Locks: locks, LockDelay: 5 * time.Millisecond, LockAttempts: 2000})
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := proc.Wait(); err != nil {
		t.Fatalf("second process: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msgs, err := ScanMbox(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != workers*each+procEach {
		t.Fatalf("%d messages, want %d", len(msgs), workers*each+procEach)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		var b bytes.Buffer
		b.ReadFrom(m.Reader(f))
		var id string
		var i int
		if _, err := fmt.Sscanf(strings.SplitN(b.String(), "\n", 2)[0], "Subject: %s %d", &id, &i); err != nil {
			t.Fatalf("message at %d: %v", m.Offset, err)
		}
		if want := testMessage(id, i); b.String() != want {
			t.Fatalf("message %s %d interleaved or damaged:\n%q\nwant\n%q", id, i, b.String(), want)
		}
		seen[fmt.Sprint(id, i)] = true
	}
	if len(seen) != workers*each+procEach {
		t.Errorf("%d distinct messages", len(seen))
	}
}

// A reader holding LockMbox (a POP3 session) keeps deliveries out until it
// unlocks; the delivery then goes through.
func TestLockMboxExcludesDelivery(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "mbox")
	lk, err := LockMbox(ctx, path, true, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fast := MboxOptions{LockAttempts: 2, LockDelay: 5 * time.Millisecond}
	// Another goroutine of this process waits on the in-process lock.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = DeliverMbox(cctx, path, "a@example.com", strings.NewReader("x\n"), fast)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delivery while locked: %v, want it to wait until the context ends", err)
	}
	// Another process meets the dotlock and the kernel locks.
	cmd := startHelper(t, "deliver-mbox", path, "1", "proc")
	cmd.Env = append(cmd.Env, "POSTKIT_MAILBOX_FAST_LOCK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), ErrLocked.Error()) {
		t.Fatalf("a second process delivering while the mbox was locked: %v %s", err, stderr.String())
	}
	lk.Unlock()
	if err := DeliverMbox(ctx, path, "a@example.com", strings.NewReader("x\n"), fast); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file left: %v", err)
	}
}
