package mda

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change file system rights")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir()'s parent is 0700
	closed := filepath.Join(dir, "closed")
	open := filepath.Join(dir, "open")
	os.Mkdir(closed, 0o700)
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errClosed, errOpen error
			if err := RunAs(65534, 65534, func() {
				_, errClosed = os.Create(filepath.Join(closed, "x"))
				var f *os.File
				if f, errOpen = os.CreateTemp(open, "f"); errOpen == nil {
					f.Close()
				}
			}); err != nil {
				t.Error(err)
				return
			}
			if !errors.Is(errClosed, fs.ErrPermission) {
				t.Errorf("create in a root-only directory as 65534: %v", errClosed)
			}
			if errOpen != nil {
				t.Errorf("create in an open directory as 65534: %v", errOpen)
			}
			// This goroutine (and the others) keep root's rights.
			f, err := os.CreateTemp(closed, "root")
			if err != nil {
				t.Errorf("root after RunAs: %v", err)
				return
			}
			f.Close()
		}()
	}
	wg.Wait()
	ents, _ := os.ReadDir(open)
	if len(ents) != 8 {
		t.Fatalf("%d files in open/", len(ents))
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s owned by %d:%d", e.Name(), st.Uid, st.Gid)
		}
	}
}

// A panic in fn reaches RunAs's caller, where a recover can catch it.
func TestRunAsPanic(t *testing.T) {
	defer func() {
		if p := recover(); p != "boom" {
			t.Errorf("recovered %v", p)
		}
	}()
	RunAs(65534, 65534, func() { panic("boom") })
	t.Error("no panic")
}

// BenchmarkRunAs measures what switching rights costs one store: a stat
// called directly (the baseline) and through RunAs (a fresh OS thread).
func BenchmarkRunAs(b *testing.B) {
	dir := b.TempDir()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			os.Stat(dir)
		}
	})
	b.Run("runas", func(b *testing.B) {
		for b.Loop() {
			RunAs(65534, 65534, func() { os.Stat(dir) })
		}
	})
}
