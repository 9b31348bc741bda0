package mailbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// inotifyWatcher watches a Maildir's new/ (deliveries: IN_CREATE,
// IN_MOVED_TO) and cur/ (IN_DELETE: expunges; renames: flag changes), or an
// mbox file (IN_MODIFY, IN_CLOSE_WRITE).
type inotifyWatcher struct {
	f    *os.File
	emit func(Event)
	done chan struct{}

	mu    sync.Mutex
	wds   map[int32]watchTarget
	paths map[string][]int32
}

type watchTarget struct {
	path string
	dir  string // "new", "cur" or "" for an mbox file
}

func newInotify(emit func(Event)) (watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// A non-blocking descriptor makes os.File use the runtime poller, so
	// Close wakes the reading goroutine.
	w := &inotifyWatcher{
		f:     os.NewFile(uintptr(fd), "inotify"),
		emit:  emit,
		done:  make(chan struct{}),
		wds:   map[int32]watchTarget{},
		paths: map[string][]int32{},
	}
	go w.run()
	return w, nil
}

func (w *inotifyWatcher) method() string { return "inotify" }

// inotifyAddWatch is swapped by tests to simulate the watch limit.
var inotifyAddWatch = syscall.InotifyAddWatch

// add watches path; an error (the inotify watch limit, for one) leaves
// the path to the hub's polling fallback.
func (w *inotifyWatcher) add(path string) error {
	var targets []watchTarget
	st, err := os.Stat(path)
	if err != nil {
		return nil // nothing to watch yet: in-process events only
	}
	if st.IsDir() {
		targets = []watchTarget{{path, "new"}, {path, "cur"}}
	} else {
		targets = []watchTarget{{path, ""}}
	}
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var added []int32
	for _, t := range targets {
		name := path
		mask := uint32(syscall.IN_MODIFY | syscall.IN_CLOSE_WRITE)
		if t.dir != "" {
			name = filepath.Join(path, t.dir)
			mask = syscall.IN_CREATE | syscall.IN_MOVED_TO | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_ONLYDIR
		}
		var wd int
		var aerr error
		if cerr := rc.Control(func(fd uintptr) { wd, aerr = inotifyAddWatch(int(fd), name, mask) }); cerr != nil {
			aerr = cerr
		}
		if aerr != nil {
			for _, a := range added {
				rc.Control(func(fd uintptr) { syscall.InotifyRmWatch(int(fd), uint32(a)) })
				delete(w.wds, a)
			}
			delete(w.paths, path)
			return fmt.Errorf("inotify %s: %w", name, aerr)
		}
		w.wds[int32(wd)] = t
		w.paths[path] = append(w.paths[path], int32(wd))
		added = append(added, int32(wd))
	}
	return nil
}

func (w *inotifyWatcher) remove(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rc, _ := w.f.SyscallConn()
	for _, wd := range w.paths[path] {
		if rc != nil {
			rc.Control(func(fd uintptr) { syscall.InotifyRmWatch(int(fd), uint32(wd)) })
		}
		delete(w.wds, wd)
	}
	delete(w.paths, path)
}

func (w *inotifyWatcher) close() {
	w.f.Close()
	<-w.done
}

func (w *inotifyWatcher) run() {
	defer close(w.done)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		// One read brings many records: send at most one event of each
		// kind per mailbox.
		type key struct {
			path string
			kind EventKind
		}
		seen := map[key]bool{}
		var order []key
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			off += syscall.SizeofInotifyEvent + nameLen
			w.mu.Lock()
			t, ok := w.wds[wd]
			w.mu.Unlock()
			if !ok || mask&syscall.IN_IGNORED != 0 {
				continue
			}
			var kind EventKind
			switch {
			case t.dir == "new" && mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0:
				kind = EventNew
			case t.dir == "cur" && mask&syscall.IN_DELETE != 0:
				kind = EventExpunge
			case t.dir == "cur" && mask&(syscall.IN_MOVED_TO|syscall.IN_MOVED_FROM|syscall.IN_CREATE) != 0:
				kind = EventFlags
			case t.dir == "" && mask&(syscall.IN_MODIFY|syscall.IN_CLOSE_WRITE) != 0:
				kind = EventNew
			default:
				continue
			}
			k := key{t.path, kind}
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
		for _, k := range order {
			w.emit(Event{Kind: k.kind, Mailbox: k.path})
		}
	}
}
