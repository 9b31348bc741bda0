package maps

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file holds what every file-backed table uses to notice that its
// file changed: a file's identity (fileStamp), a cheap "is a check due?"
// (fileWatch, on a shared coarse clock) and the stat that answers "has it
// changed?". A Postfix daemon notices a changed table file and restarts;
// postkit tables reload themselves instead, within about a second.

// watchInterval is how often at most a table looks at its file.
const watchInterval = time.Second

// fileStamp identifies a version of a file: a replaced file has a new device
// or inode, a rewritten one a new size or modification time.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

// stampOf is the stamp of a stat result.
func stampOf(st *syscall.Stat_t) fileStamp {
	return fileStamp{uint64(st.Dev), uint64(st.Ino), st.Size, st.Mtim.Sec*1e9 + st.Mtim.Nsec}
}

// stampOfInfo is the stamp of an os.Stat or File.Stat result.
func stampOfInfo(fi fs.FileInfo) fileStamp {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return stampOf(st)
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

// readFileStamped reads a whole file and the stamp of the version read.
func readFileStamped(path string) ([]byte, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fileStamp{}, err
	}
	// Read exactly the size stat reported, then anything the file grew by
	// meanwhile; bytes.Buffer would double its buffer at the end.
	data := make([]byte, st.Size, st.Size+1)
	n, err := io.ReadFull(f, data)
	data = data[:n]
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	} else if err == nil {
		// Full: the file may have grown since Fstat.
		var one [1]byte
		if m, _ := f.Read(one[:]); m > 0 {
			buf := bytes.NewBuffer(append(data, one[0]))
			_, err = buf.ReadFrom(f)
			data = buf.Bytes()
		}
	}
	if err != nil {
		return nil, fileStamp{}, err
	}
	return data, stampOf(&st), nil
}

// fileWatch notices when a file changes, looking at most once per
// watchInterval.
//
// Reading the system clock on every lookup is too dear for a table that
// answers in tens of nanoseconds (time.Now costs 80 to 200 ns under some
// hypervisors), so due compares against coarseNow: two loads of memory that
// is written ten times a second, so cores do not fight over the cache line.
type fileWatch struct {
	path  string
	next  atomic.Int64 // coarseNow value at which the next check is due
	mu    sync.Mutex   // guards stamp
	stamp fileStamp
}

// init starts watching path, whose loaded version is st.
func (w *fileWatch) init(path string, st fileStamp) {
	w.path = path
	w.set(st)
	w.next.Store(coarseNow() + int64(watchInterval))
}

// due reports, to one caller per interval, that it is time to check.
func (w *fileWatch) due() bool {
	now := coarseNow()
	next := w.next.Load()
	return now >= next && w.next.CompareAndSwap(next, now+int64(watchInterval))
}

// changed stats the file and reports whether it differs from the version
// last loaded. When the stat fails it reports false and the error; the
// caller keeps the old contents.
func (w *fileWatch) changed() (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(w.path, &st); err != nil {
		return false, &fs.PathError{Op: "stat", Path: w.path, Err: err}
	}
	return stampOf(&st) != w.get(), nil
}

// get returns the stamp of the version last loaded.
func (w *fileWatch) get() fileStamp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stamp
}

// set records st as the version now loaded.
func (w *fileWatch) set(st fileStamp) {
	w.mu.Lock()
	w.stamp = st
	w.mu.Unlock()
}

// The coarse clock, shared by every table. While tables are being looked
// up, a goroutine stores the time every coarseTick; it stops after
// coarseIdle without a lookup, so an idle program is not woken up for
// nothing, and the next lookup reads the system clock and starts it again.
// A changed file is thus noticed at most watchInterval plus one tick late.
const (
	coarseTick = 100 * time.Millisecond
	coarseIdle = 5 * time.Second
)

// coarseBase is the clock's monotonic origin: cheaper than the wall clock.
var coarseBase = time.Now()

// coarse is the clock's state. Every lookup reads it, so it has cache lines
// of its own: next to a variable that something else writes often (the
// linker places package variables as it likes) every core would keep
// reloading the line.
var coarse struct {
	_       [128]byte
	clock   atomic.Int64 // nanoseconds since coarseBase, as of the last tick
	used    atomic.Bool  // a lookup asked for the time since the last tick
	running atomic.Bool  // the ticking goroutine is running
	_       [128]byte
}

// coarseNow returns the time in nanoseconds since coarseBase, at most about
// one tick old. A lookup while the clock runs costs two atomic loads.
func coarseNow() int64 {
	if !coarse.used.Load() {
		coarseWake()
	}
	return coarse.clock.Load()
}

// coarseWake marks the clock used and starts the ticker if it is stopped,
// reading the system clock so that the caller gets the true time.
func coarseWake() {
	coarse.used.Store(true)
	if coarse.running.CompareAndSwap(false, true) {
		coarse.clock.Store(int64(time.Since(coarseBase)))
		go coarseRun()
	}
}

// coarseRun ticks until the clock has not been used for coarseIdle.
func coarseRun() {
	tick := time.NewTicker(coarseTick)
	defer tick.Stop()
	idle := time.Duration(0)
	for range tick.C {
		coarse.clock.Store(int64(time.Since(coarseBase)))
		if coarse.used.Swap(false) {
			idle = 0
			continue
		}
		if idle += coarseTick; idle < coarseIdle {
			continue
		}
		coarse.running.Store(false)
		// A lookup that saw the clock running just before it stopped has
		// marked it used: keep ticking for it, unless one restarted it.
		if !coarse.used.Load() || !coarse.running.CompareAndSwap(false, true) {
			return
		}
		idle = 0
	}
}
