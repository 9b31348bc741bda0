package cleanup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DirStore is a simple durable Store: one directory, one content file per
// message (named by its queue ID) and one envelope file beside it
// (ID.env, JSON). A message exists once its envelope file does; Commit
// fsyncs the content, the envelope and the directory before it returns.
//
// It is for tests, examples and small programs. The queue (package queue,
// issue 6) implements Store with Postfix's queue directories, hold and
// deferred queues and scheduling, and replaces DirStore in a real MTA.
type DirStore struct {
	Dir string
}

// OpenDirStore creates dir if needed and returns a DirStore on it.
func OpenDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cleanup: dirstore: %w", err)
	}
	return &DirStore{Dir: dir}, nil
}

// Create makes a new content file. The queue ID is Postfix's short form:
// the creation time's microseconds as five hex digits and the file's
// inode number in hex (spec §7.2), unique among the files in the
// directory.
func (s *DirStore) Create(ctx context.Context, arrival time.Time) (File, error) {
	for range 100 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tmp, err := os.CreateTemp(s.Dir, ".new-*")
		if err != nil {
			return nil, fmt.Errorf("cleanup: dirstore: creating a queue file: %w", err)
		}
		st, err := tmp.Stat()
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, fmt.Errorf("cleanup: dirstore: %w", err)
		}
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		id := fmt.Sprintf("%05X%X", time.Now().Nanosecond()/1000, ino)
		path := filepath.Join(s.Dir, id)
		// A leftover file of the same name (a crash before an old
		// commit) is never overwritten: link fails if it exists.
		if err := os.Link(tmp.Name(), path); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return nil, fmt.Errorf("cleanup: dirstore: %w", err)
		}
		os.Remove(tmp.Name())
		return &dirFile{s: s, f: tmp, id: id, path: path}, nil
	}
	return nil, errors.New("cleanup: dirstore: no free queue ID")
}

type dirFile struct {
	s    *DirStore
	f    *os.File
	id   string
	path string
	done bool
}

func (f *dirFile) ID() string { return f.id }

func (f *dirFile) Write(p []byte) (int, error) { return f.f.Write(p) }

func (f *dirFile) Commit(ctx context.Context, env *Envelope) error {
	if f.done {
		return errors.New("cleanup: dirstore: commit after commit or abort")
	}
	f.done = true
	fail := func(err error) error {
		f.f.Close()
		os.Remove(f.path)
		return fmt.Errorf("cleanup: dirstore: committing %s: %w", f.id, err)
	}
	if err := f.f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.f.Close(); err != nil {
		return fail(err)
	}
	data, err := json.MarshalIndent(env, "", "\t")
	if err != nil {
		return fail(err)
	}
	tmp := f.path + ".env.tmp"
	if err := writeSync(tmp, data); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if err := os.Rename(tmp, f.path+".env"); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if err := syncDir(f.s.Dir); err != nil {
		return fmt.Errorf("cleanup: dirstore: committing %s: %w", f.id, err)
	}
	return nil
}

func (f *dirFile) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.f.Close()
	if err := os.Remove(f.path); err != nil {
		return fmt.Errorf("cleanup: dirstore: aborting %s: %w", f.id, err)
	}
	return nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// List returns the queue IDs of the committed messages, sorted.
func (s *DirStore) List() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("cleanup: dirstore: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".env"); ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Read returns a committed message's envelope and content.
func (s *DirStore) Read(id string) (*Envelope, []byte, error) {
	if id == "" || strings.ContainsAny(id, "/.") {
		return nil, nil, fmt.Errorf("cleanup: dirstore: bad queue ID %q", id)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, id+".env"))
	if err != nil {
		return nil, nil, fmt.Errorf("cleanup: dirstore: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, fmt.Errorf("cleanup: dirstore: %s.env: %w", id, err)
	}
	content, err := os.ReadFile(filepath.Join(s.Dir, id))
	if err != nil {
		return nil, nil, fmt.Errorf("cleanup: dirstore: %w", err)
	}
	return &env, content, nil
}

// Remove deletes a committed message.
func (s *DirStore) Remove(id string) error {
	if id == "" || strings.ContainsAny(id, "/.") {
		return fmt.Errorf("cleanup: dirstore: bad queue ID %q", id)
	}
	err1 := os.Remove(filepath.Join(s.Dir, id+".env"))
	err2 := os.Remove(filepath.Join(s.Dir, id))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("cleanup: dirstore: %w", err)
	}
	return nil
}
