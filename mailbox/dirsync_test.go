package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fsyncLog replaces syncDirFunc and testHookLinked for a test: it numbers
// links, fsync starts and ends and delivery returns on one clock, so a test
// can tell which fsyncs began after a link and ended before a return.
type fsyncLog struct {
	seq   atomic.Uint64
	mu    sync.Mutex
	links map[string]uint64 // new/ path -> its link's number
	syncs []fsyncRecord
	fail  func(n int) error // n-th fsync (1-based) fails with this, when set
	block func(n int)       // runs before the n-th fsync, when set
}

type fsyncRecord struct {
	dir        string
	start, end uint64
	err        error
}

func installFsyncLog(t *testing.T) *fsyncLog {
	l := &fsyncLog{links: map[string]uint64{}}
	oldSync, oldHook := syncDirFunc, testHookLinked
	syncDirFunc = func(dir string) error {
		l.mu.Lock()
		n := len(l.syncs) + 1
		l.syncs = append(l.syncs, fsyncRecord{dir: dir}) // reserve slot n-1
		l.mu.Unlock()
		if l.block != nil {
			l.block(n)
		}
		start := l.seq.Add(1)
		err := syncDir(dir)
		if l.fail != nil && err == nil {
			err = l.fail(n)
		}
		end := l.seq.Add(1)
		l.mu.Lock()
		l.syncs[n-1] = fsyncRecord{dir: dir, start: start, end: end, err: err}
		l.mu.Unlock()
		return err
	}
	testHookLinked = func(p string) {
		n := l.seq.Add(1)
		l.mu.Lock()
		l.links[p] = n
		l.mu.Unlock()
	}
	t.Cleanup(func() { syncDirFunc, testHookLinked = oldSync, oldHook })
	return l
}

// covered reports whether a successful fsync of path's directory began
// after path was linked and ended before ret.
func (l *fsyncLog) covered(path string, ret uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	link, ok := l.links[path]
	if !ok {
		return fmt.Errorf("%s: no link recorded", path)
	}
	dir := filepath.Dir(path)
	for _, s := range l.syncs {
		if s.dir == dir && s.start > link && s.end != 0 && s.end < ret && s.err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s (linked at %d, returned at %d): no fsync of %s began after the link and ended before the return", path, link, ret, dir)
}

func (l *fsyncLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.syncs)
}

func registrySize() int {
	dirSyncers.mu.Lock()
	defer dirSyncers.mu.Unlock()
	return len(dirSyncers.m)
}

// Many goroutines delivering into one Maildir and into several: every
// DeliverMaildir return follows an fsync of new/ that began after its
// link, every message is whole in new/, tmp/ is empty, fewer fsyncs than
// deliveries were needed, and the registry is empty afterwards.
func TestDeliverMaildirSharedDirSync(t *testing.T) {
	for _, boxes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dmaildirs", boxes), func(t *testing.T) {
			l := installFsyncLog(t)
			hub := NewHub(HubOptions{Watch: WatchNone})
			base := t.TempDir()
			const workers, each = 24, 6
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			var files sync.Map // path -> content
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					dir := filepath.Join(base, fmt.Sprint("box", w%boxes))
					for i := 0; i < each; i++ {
						msg := fmt.Sprintf("Subject: w%d i%d\n\nbody %d/%d\n", w, i, w, i)
						p, err := DeliverMaildir(context.Background(), dir, strings.NewReader(msg),
							MaildirOptions{Create: true, Hostname: "test", Hub: hub})
						ret := l.seq.Add(1)
						if err != nil {
							errs <- err
							continue
						}
						if err := l.covered(p, ret); err != nil {
							errs <- err
						}
						files.Store(p, msg)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			n := 0
			files.Range(func(k, v any) bool {
				n++
				data, err := os.ReadFile(k.(string))
				if err != nil || string(data) != v.(string) {
					t.Errorf("%s: %q %v, want %q", k, data, err, v)
				}
				return true
			})
			if n != workers*each {
				t.Errorf("%d distinct files, want %d", n, workers*each)
			}
			for b := 0; b < boxes; b++ {
				dir := filepath.Join(base, fmt.Sprint("box", b))
				if names, _ := readNames(filepath.Join(dir, "tmp")); len(names) != 0 {
					t.Errorf("%s/tmp holds %v", dir, names)
				}
				if names, _ := readNames(filepath.Join(dir, "new")); len(names) != workers*each/boxes {
					t.Errorf("%s/new holds %d files, want %d", dir, len(names), workers*each/boxes)
				}
			}
			// makeMaildir's fsyncs of the parents are plain syncDir
			// calls, not logged: every logged one is a new/ fsync.
			if c := l.count(); c >= workers*each {
				t.Errorf("%d directory fsyncs for %d deliveries: none shared", c, workers*each)
			} else {
				t.Logf("%d directory fsyncs for %d deliveries into %d Maildirs", c, workers*each, boxes)
			}
			if r := registrySize(); r != 0 {
				t.Errorf("%d directory syncers left in the registry", r)
			}
		})
	}
}

// With coalescing off every delivery fsyncs new/ itself (the benchmark's
// baseline really is the old behaviour).
func TestDeliverMaildirUnsharedDirSync(t *testing.T) {
	l := installFsyncLog(t)
	coalesceDirSync.Store(false)
	defer coalesceDirSync.Store(true)
	dir := filepath.Join(t.TempDir(), "Maildir")
	hub := NewHub(HubOptions{Watch: WatchNone})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := DeliverMaildir(context.Background(), dir, strings.NewReader("x\n"), MaildirOptions{Create: true, Hostname: "t", Hub: hub})
			ret := l.seq.Add(1)
			if err == nil {
				err = l.covered(p, ret)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c := l.count(); c != 8 {
		t.Errorf("%d fsyncs for 8 deliveries with coalescing off", c)
	}
}

// One delivery's fsync is held; K deliveries arriving meanwhile all wait
// for one more fsync, which fails: each of them gets the error and its
// file is gone from new/, the first delivery succeeds, and the next
// delivery after them succeeds with a fsync of its own.
func TestDeliverMaildirSharedDirSyncError(t *testing.T) {
	l := installFsyncLog(t)
	started, release := make(chan struct{}), make(chan struct{})
	l.block = func(n int) {
		if n == 1 {
			close(started)
			<-release
		}
	}
	l.fail = func(n int) error {
		if n == 2 {
			return &os.PathError{Op: "sync", Path: "new", Err: syscall.EIO}
		}
		return nil
	}
	dir := filepath.Join(t.TempDir(), "Maildir")
	newDir := filepath.Join(dir, "new")
	if err := makeMaildir(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	hub := NewHub(HubOptions{Watch: WatchNone})
	deliver := func(msg string) (string, error) {
		return DeliverMaildir(context.Background(), dir, strings.NewReader(msg), MaildirOptions{Hostname: "t", Hub: hub})
	}
	firstDone := make(chan error, 1)
	go func() {
		_, err := deliver("first\n")
		firstDone <- err
	}()
	<-started
	const K = 8
	errs := make(chan error, K)
	for i := 0; i < K; i++ {
		go func() {
			_, err := deliver(fmt.Sprintf("joiner %d\n", i))
			errs <- err
		}()
	}
	// Wait until all K have joined the pending round.
	deadline := time.Now().Add(20 * time.Second)
	for {
		dirSyncers.mu.Lock()
		s := dirSyncers.m[newDir]
		dirSyncers.mu.Unlock()
		joined := 0
		if s != nil {
			s.mu.Lock()
			if s.next != nil {
				joined = s.next.waiters
			}
			s.mu.Unlock()
		}
		if joined == K {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries joined the pending fsync", joined, K)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	for i := 0; i < K; i++ {
		err := <-errs
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("joiner: %v, want the fsync's EIO", err)
		}
	}
	if c := l.count(); c != 2 {
		t.Errorf("%d fsyncs for 1+%d deliveries, want 2", c, K)
	}
	names, _ := readNames(newDir)
	if len(names) != 1 {
		t.Fatalf("new/ holds %d files, want only the first delivery's", len(names))
	}
	if data, _ := os.ReadFile(filepath.Join(newDir, names[0])); string(data) != "first\n" {
		t.Errorf("new/ holds %q", data)
	}
	if names, _ := readNames(filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ holds %v", names)
	}
	p, err := deliver("after\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.covered(p, l.seq.Add(1)); err != nil {
		t.Error(err)
	}
	if c := l.count(); c != 3 {
		t.Errorf("%d fsyncs after the next delivery, want 3", c)
	}
	if r := registrySize(); r != 0 {
		t.Errorf("%d directory syncers left in the registry", r)
	}
}

// BenchmarkDeliverMaildirConcurrent: 4 or 16 goroutines (on 2 CPUs) delivering 1 KiB
// messages into one Maildir, with the new/ fsync shared (on) and per
// delivery (off, the baseline). dirsyncs/msg counts fsyncs of new/.
func BenchmarkDeliverMaildirConcurrent(b *testing.B) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	msg := benchMessage(1024)
	for _, par := range []int{2, 8} { // 4 and 16 goroutines on 2 CPUs
		for _, mode := range []struct {
			name string
			on   bool
		}{{"off", false}, {"on", true}} {
			b.Run(fmt.Sprintf("g%d/coalesce=%s", par*runtime.GOMAXPROCS(0), mode.name), func(b *testing.B) {
				var syncs atomic.Int64
				old := syncDirFunc
				syncDirFunc = func(dir string) error { syncs.Add(1); return syncDir(dir) }
				coalesceDirSync.Store(mode.on)
				defer func() { syncDirFunc = old; coalesceDirSync.Store(true) }()
				dir := filepath.Join(b.TempDir(), "Maildir")
				if err := makeMaildir(dir, 0, 0); err != nil {
					b.Fatal(err)
				}
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := DeliverMaildir(ctx, dir, bytes.NewReader(msg), MaildirOptions{Create: true, Hostname: "bench", Hub: hub}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(syncs.Load())/float64(b.N), "dirsyncs/msg")
			})
		}
	}
}
