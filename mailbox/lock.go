package mailbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// LockOptions say how an mbox file is locked. The zero value is Postfix's
// Linux default: dotlock and fcntl, 20 attempts about one second apart,
// lock files older than 500 seconds are stale.
type LockOptions struct {
	// Locks are the methods, as in mailbox_delivery_lock: "dotlock",
	// "fcntl", "flock". nil means fcntl and dotlock.
	Locks []string
	// Attempts is deliver_lock_attempts (0 = 20).
	Attempts int
	// Delay is deliver_lock_delay (0 = 1s); each wait is randomised
	// between Delay/2 and Delay*3/2, like Postfix's rand_sleep.
	Delay time.Duration
	// StaleTime is stale_lock_time (0 = 500s): a dotlock file whose
	// ctime is older is removed.
	StaleTime time.Duration
}

func (o LockOptions) attempts() int {
	if o.Attempts > 0 {
		return o.Attempts
	}
	return 20
}

func (o LockOptions) delay() time.Duration {
	if o.Delay > 0 {
		return o.Delay
	}
	return time.Second
}

func (o LockOptions) stale() time.Duration {
	if o.StaleTime > 0 {
		return o.StaleTime
	}
	return 500 * time.Second
}

type lockSet struct{ dotlock, fcntl, flock bool }

func parseLocks(locks []string) (lockSet, error) {
	if locks == nil {
		return lockSet{dotlock: true, fcntl: true}, nil
	}
	var s lockSet
	for _, l := range locks {
		switch l {
		case "dotlock":
			s.dotlock = true
		case "fcntl":
			s.fcntl = true
		case "flock":
			s.flock = true
		default:
			return s, fmt.Errorf("mailbox: unknown lock method %q (want dotlock, fcntl or flock)", l)
		}
	}
	return s, nil
}

// sleepCtx waits about d (randomised to d/2..3d/2) or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d > 1 {
		d = d/2 + rand.N(d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dotlock creates path+".lock" with O_CREAT|O_EXCL, as Postfix's
// dot_lockfile() does, removing a stale one (ctime older than StaleTime).
// It returns the function that removes the lock.
func dotlock(ctx context.Context, path string, o LockOptions) (func(), error) {
	lockPath := path + ".lock"
	for try := 1; ; try++ {
		f, err := os.OpenFile(lockPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0)
		if err == nil {
			f.Close()
			return func() { os.Remove(lockPath) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("mailbox: create lock file %s: %w", lockPath, err)
		}
		if try >= o.attempts() {
			break
		}
		if ctime, ok := changeTime(lockPath); ok {
			if time.Since(ctime) > o.stale() {
				if err := os.Remove(lockPath); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("mailbox: remove stale lock file %s: %w", lockPath, err)
				}
				continue
			}
		}
		if err := sleepCtx(ctx, o.delay()); err != nil {
			return nil, fmt.Errorf("mailbox: lock %s: %w", lockPath, err)
		}
	}
	return nil, fmt.Errorf("mailbox: %w %s: %s exists", ErrLocked, path, filepath.Base(lockPath))
}

// kernelLock takes an exclusive flock (method "flock") or fcntl record lock
// (method "fcntl") on f, retrying like the dotlock. The fcntl lock is an
// open-file-description lock on Linux (F_OFD_SETLK), which conflicts with the
// classic POSIX locks Postfix, procmail and mutt take, but belongs to the
// descriptor rather than the process, so it also excludes other goroutines
// and is not dropped when some other descriptor of the file is closed.
func kernelLock(ctx context.Context, f *os.File, method string, o LockOptions) error {
	for try := 1; ; try++ {
		var err error
		switch method {
		case "flock":
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		default:
			err = fcntlLock(f, syscall.F_WRLCK)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("mailbox: %s lock %s: %w", method, f.Name(), err)
		}
		if try >= o.attempts() {
			return fmt.Errorf("mailbox: %w %s: %s lock held by another process", ErrLocked, f.Name(), method)
		}
		if err := sleepCtx(ctx, o.delay()); err != nil {
			return fmt.Errorf("mailbox: %s lock %s: %w", method, f.Name(), err)
		}
	}
}

func fcntlLock(f *os.File, typ int16) error {
	lk := syscall.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
	err := syscall.FcntlFlock(f.Fd(), fOFDSetLk, &lk)
	if errors.Is(err, syscall.EINVAL) && fOFDSetLk != syscall.F_SETLK {
		// Kernel without OFD locks: classic process-wide lock.
		err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	}
	return err
}

// pathLocks serialises deliveries to one path inside this process, before
// any file lock is tried: it keeps goroutines from spinning on each other's
// dotlock and makes "fcntl" alone safe between goroutines.
var pathLocks sync.Map // absolute path -> chan struct{} (capacity 1)

func lockPathInProcess(ctx context.Context, path string) (func(), error) {
	v, _ := pathLocks.LoadOrStore(path, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("mailbox: lock %s: %w", path, ctx.Err())
	}
}

// MboxLock is a held lock on an mbox file (see LockMbox).
type MboxLock struct {
	// File is the mbox, opened read-write.
	File *os.File
	// Created is set when LockMbox made the file (O_CREAT|O_EXCL).
	Created bool
	release []func()
}

// LockMbox opens the mbox at path read-write (creating it 0600 when create
// is set) and locks it the way DeliverMbox does: the in-process lock, the
// dotlock, then flock, then fcntl, as o.Locks asks. POP3 and mbox readers
// hold it while they read or rewrite the file. Unlock releases everything
// and closes the file.
func LockMbox(ctx context.Context, path string, create bool, o LockOptions) (*MboxLock, error) {
	set, err := parseLocks(o.Locks)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %s: %w", path, err)
	}
	l := &MboxLock{}
	unlockP, err := lockPathInProcess(ctx, abs)
	if err != nil {
		return nil, err
	}
	l.release = append(l.release, unlockP)
	if set.dotlock {
		// Postfix dotlocks only regular files or files that do not exist yet.
		if st, err := os.Stat(abs); err != nil || st.Mode().IsRegular() {
			unlockD, err := dotlock(ctx, abs, o)
			if err != nil {
				l.Unlock()
				return nil, err
			}
			l.release = append(l.release, unlockD)
		}
	}
	// Create with O_EXCL first, so that Created says whether this call
	// made the file (Postfix's safe_open): a file someone else put there
	// in the meantime is an existing file, never given to the new owner.
	var f *os.File
	for try := 0; ; try++ {
		if create {
			f, err = os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
			if err == nil {
				l.Created = true
				break
			}
			if !errors.Is(err, os.ErrExist) {
				break
			}
		}
		f, err = os.OpenFile(abs, os.O_RDWR|syscall.O_NOFOLLOW, 0)
		if !create || try > 0 || !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		l.Unlock()
		return nil, fmt.Errorf("mailbox: open mailbox %s: %w", path, err)
	}
	l.File = f
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		l.Unlock()
		return nil, fmt.Errorf("mailbox: %s is not a regular file", path)
	}
	for _, m := range []string{"flock", "fcntl"} {
		if (m == "flock" && !set.flock) || (m == "fcntl" && !set.fcntl) {
			continue
		}
		if err := kernelLock(ctx, f, m, o); err != nil {
			l.Unlock()
			return nil, err
		}
	}
	return l, nil
}

// Unlock releases the locks (in reverse order) and closes the file.
func (l *MboxLock) Unlock() {
	if l.File != nil {
		l.File.Close() // drops flock and the OFD fcntl lock
		l.File = nil
	}
	for i := len(l.release) - 1; i >= 0; i-- {
		l.release[i]()
	}
	l.release = nil
}
