package queue

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultFS fails the chosen OS call while armed, as a full or failing disk
// would (EIO from fsync, EXDEV or ENOSPC from rename).
type faultFS struct {
	osFS
	armed    atomic.Bool
	fileSync bool // fail fsync of queue files
	dirSync  bool // fail fsync of directories
	rename   bool
}

var errInjected = errors.New("injected fault")

func isDir(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.IsDir()
}

func (f *faultFS) Sync(file *os.File) error {
	if f.armed.Load() && (isDir(file) && f.dirSync || !isDir(file) && f.fileSync) {
		return &os.PathError{Op: "fsync", Path: file.Name(), Err: syscall.EIO}
	}
	return f.osFS.Sync(file)
}

func (f *faultFS) Datasync(file *os.File) error {
	if f.armed.Load() && f.fileSync {
		return &os.PathError{Op: "fdatasync", Path: file.Name(), Err: syscall.EIO}
	}
	return f.osFS.Datasync(file)
}

func (f *faultFS) Rename(from, to string) error {
	if f.armed.Load() && f.rename {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.ENOSPC}
	}
	return f.osFS.Rename(from, to)
}

func TestCommitFaults(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("b", 98)+"\r\n", 3000)
	cases := []struct {
		name    string
		fs      *faultFS
		content string
		want    syscall.Errno
	}{
		// With group commit, a small message's durability is the
		// journal's fsync: a file fsync failure hits the journal.
		{"file fsync fails", &faultFS{fileSync: true}, testContent, syscall.EIO},
		{"file fsync fails, big message", &faultFS{fileSync: true}, big, syscall.EIO},
		{"rename fails", &faultFS{rename: true}, testContent, syscall.ENOSPC},
		// Directory fsyncs are in the commit path of big messages (and of
		// every message without group commit).
		{"directory fsync fails", &faultFS{dirSync: true}, big, syscall.EIO},
	}
	for _, c := range cases {
		for _, group := range []bool{true, false} {
			name := c.name + map[bool]string{true: "/group", false: "/nogroup"}[group]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				fs := &faultFS{fileSync: c.fs.fileSync, dirSync: c.fs.dirSync, rename: c.fs.rename}
				q, err := open(dir, Options{Logger: quiet, NoGroupCommit: !group}, fs)
				if err != nil {
					t.Fatal(err)
				}
				defer q.Close()
				ctx := context.Background()
				kept := commit(t, q, testContent, testEnvelope(1))
				fs.armed.Store(true)
				// Several at once, so a failed group fails every member.
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range errs {
					wg.Go(func() {
						f, err := q.Create(ctx, time.Time{})
						if err != nil {
							errs[i] = err
							return
						}
						f.Write([]byte(c.content))
						env := testEnvelope(1)
						env.Hold = i%2 == 1
						errs[i] = f.Commit(ctx, env)
						if errs[i] != nil {
							f.Abort() // as cleanup does; must be harmless
						}
					})
				}
				wg.Wait()
				for i, err := range errs {
					if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "committing") {
						t.Errorf("commit %d: %v, want a commit error wrapping %v", i, err, c.want)
					}
				}
				// Nothing half-done is visible: only the message committed
				// before the fault, and no temporary files.
				for _, s := range States {
					got := names(t, q, s)
					if s == Incoming && (len(got) != 1 || got[0] != kept) || s != Incoming && len(got) != 0 {
						t.Errorf("%s holds %v", s, got)
					}
				}
				fs.armed.Store(false)
				id := commit(t, q, testContent, testEnvelope(1))
				q.Close()
				q2 := openTest(t, dir, Options{})
				r := q2.Recovery()
				if len(r.Corrupt)+len(r.Removed) != 0 {
					t.Errorf("recovery after faults: %+v", r)
				}
				if l, _ := q2.List(Incoming); len(l) != 2 || l[0].ID != kept || l[1].ID != id {
					t.Errorf("after the fault cleared: %+v", l)
				}
			})
		}
	}
}

// A failing fsync or rename in the later operations is reported and
// leaves the message where it was or where it went, whole.
func TestOperationFaults(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{fileSync: true, dirSync: true, rename: true}
	q, err := open(dir, Options{Logger: quiet}, fs)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	id := commit(t, q, testContent, testEnvelope(1))
	fs.armed.Store(true)
	for name, err := range map[string]error{
		"MarkRecipients": q.MarkRecipients(ctx, id, []Status{{Rcpt: 0, Outcome: Delivered}}),
		"Move":           q.Move(ctx, id, Active),
		"Defer":          q.Defer(ctx, id, time.Now()),
	} {
		if err == nil || !strings.Contains(err.Error(), id) {
			t.Errorf("%s under faults: %v, want an error naming %s", name, err, id)
		}
	}
	fs.armed.Store(false)
	m, err := q.Read(id)
	if err != nil {
		t.Fatalf("the message after failed operations: %v", err)
	}
	m.Close()
	// A removal whose directory fsync fails is reported: the caller does
	// not take it as durable.
	fs.armed.Store(true)
	if err := q.Remove(ctx, id); err == nil || !strings.Contains(err.Error(), id) {
		t.Errorf("Remove under faults: %v", err)
	}
}
