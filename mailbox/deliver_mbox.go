package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/address"
)

// MboxOptions configure DeliverMbox.
type MboxOptions struct {
	// Locks are mailbox_delivery_lock's methods: "dotlock", "fcntl",
	// "flock"; nil means fcntl and dotlock (Postfix's Linux default).
	Locks []string
	// Create makes the file (mode 0600) when it does not exist.
	Create bool
	// SizeLimit > 0 is mailbox_size_limit / virtual_mailbox_limit: the
	// file may not grow beyond this many bytes (ErrTooLarge).
	SizeLimit int64
	// Time is the date of the From_ line; zero means now.
	Time time.Time
	// UID and GID own a newly created file (<= 0: the process's).
	UID, GID int
	// Hub is notified after a delivery; nil means DefaultHub.
	Hub *Hub
	// Check, when set, is called with the status of the opened and
	// locked file (and whether this delivery created it) before anything
	// is written; an error it returns ends the delivery and is returned
	// as is. Agents check ownership with it (strict_mailbox_ownership).
	Check func(st os.FileInfo, created bool) error
	// LockAttempts, LockDelay and StaleLockTime are deliver_lock_attempts
	// (20), deliver_lock_delay (1s) and stale_lock_time (500s); zero
	// values mean Postfix's defaults.
	LockAttempts  int
	LockDelay     time.Duration
	StaleLockTime time.Duration
}

// FromLine returns the mbox separator line Postfix writes (without the
// newline): "From " + sender + two spaces + asctime(3) of t in t's
// location. The null sender is MAILER-DAEMON; sender is in internal form
// and its local part is quoted as RFC 5322 needs (Postfix's
// quote_822_local).
func FromLine(sender string, t time.Time) string {
	s := "MAILER-DAEMON"
	if sender != "" {
		s = address.Quote(sender)
	}
	return "From " + s + "  " + t.Format("Mon Jan _2 15:04:05 2006")
}

// DeliverMbox appends the message read from r (LF line ends) to the mbox
// file at path, as Postfix's local(8) does (postfix-spec §8.2): the From_
// line, the message with every line that begins with "From " quoted as
// ">From " (mboxo), a newline added if the last line lacks one, and an
// empty line. The file is locked per opts.Locks (dotlock before the
// open, then flock, then fcntl), fsynced, and truncated back to its
// original size on any error, so a failed delivery leaves no partial
// message. A lock not obtained in time is ErrLocked; a size limit
// exceeded is ErrTooLarge.
func DeliverMbox(ctx context.Context, path string, sender string, r io.Reader, opts MboxOptions) (err error) {
	t := opts.Time
	if t.IsZero() {
		t = time.Now()
	}
	lo := LockOptions{Locks: opts.Locks, Attempts: opts.LockAttempts, Delay: opts.LockDelay, StaleTime: opts.StaleLockTime}
	lk, err := LockMbox(ctx, path, opts.Create, lo)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	f := lk.File
	created := lk.Created
	if created && (opts.UID > 0 || opts.GID > 0) {
		if err := chownFile(f, opts.UID, opts.GID); err != nil {
			return fmt.Errorf("mailbox: chown %s: %w", path, err)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("mailbox: stat %s: %w", path, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink != 1 {
		return fmt.Errorf("mailbox: cannot update mailbox %s: %w: file has %d hard links", path, ErrUnsafeFile, sys.Nlink)
	}
	if opts.Check != nil {
		// The file as opened (Postfix checks the descriptor, not the
		// name, so a file swapped in after a look at the name is caught).
		if err := opts.Check(st, created); err != nil {
			return err
		}
	}
	orig := st.Size()
	if opts.SizeLimit > 0 && orig > opts.SizeLimit {
		return fmt.Errorf("mailbox: cannot update mailbox %s: %w", path, ErrTooLarge)
	}
	defer func() {
		if err != nil {
			if terr := f.Truncate(orig); terr != nil {
				err = fmt.Errorf("%w (and truncate back to %d bytes failed: %v)", err, orig, terr)
			}
		}
	}()
	if _, err := f.Seek(orig, io.SeekStart); err != nil {
		return fmt.Errorf("mailbox: seek %s: %w", path, err)
	}
	limit := int64(0)
	if opts.SizeLimit > 0 {
		limit = opts.SizeLimit - orig
	}
	lw := &limitWriter{w: f, left: limit, limited: opts.SizeLimit > 0}
	bw := bufio.NewWriterSize(lw, 64*1024)
	// A writer killed half-way (SIGKILL, power loss before its truncate)
	// leaves a file that does not end in an empty line: start on a fresh
	// line after an empty one so that this message at least is intact and
	// found by readers.
	if pad, err := separatorPad(f, orig); err != nil {
		return fmt.Errorf("mailbox: read %s: %w", path, err)
	} else if pad != "" {
		if _, err := bw.WriteString(pad); err != nil {
			return fmt.Errorf("mailbox: cannot update mailbox %s: %w", path, err)
		}
	}
	if _, err := bw.WriteString(FromLine(sender, t) + "\n"); err != nil {
		return fmt.Errorf("mailbox: cannot update mailbox %s: %w", path, err)
	}
	if err := writeQuoted(ctx, bw, r); err != nil {
		return fmt.Errorf("mailbox: cannot update mailbox %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mailbox: cannot update mailbox %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mailbox: cannot update mailbox %s: fsync: %w", path, err)
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return err
		}
	}
	hubOr(opts.Hub).Notify(Event{Kind: EventNew, Mailbox: path})
	return nil
}

// separatorPad returns what must precede a new From_ line in a file of
// size bytes: nothing when it is empty or ends with an empty line.
func separatorPad(f *os.File, size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	var tail [2]byte
	n := int64(2)
	if size < 2 {
		n = 1
	}
	if _, err := f.ReadAt(tail[:n], size-n); err != nil {
		return "", err
	}
	switch {
	case n == 2 && tail[0] == '\n' && tail[1] == '\n':
		return "", nil
	case tail[n-1] == '\n':
		return "\n", nil
	}
	return "\n\n", nil
}

// limitWriter fails with ErrTooLarge instead of writing past left bytes,
// the way a write fails with EFBIG under Postfix's RLIMIT_FSIZE.
type limitWriter struct {
	w       io.Writer
	left    int64
	limited bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.limited && int64(len(p)) > l.left {
		return 0, ErrTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

var fromPrefix = []byte("From ")

// writeQuoted copies r to w, quoting "From " at the start of a line,
// ending the last line and adding the empty separator line.
func writeQuoted(ctx context.Context, w *bufio.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64*1024)
	atStart := true
	lastNL := true
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && bytes.HasPrefix(chunk, fromPrefix) {
				if err := w.WriteByte('>'); err != nil {
					return err
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
			lastNL = chunk[len(chunk)-1] == '\n'
			atStart = lastNL
		}
		switch {
		case err == nil, err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if !lastNL {
				if err := w.WriteByte('\n'); err != nil {
					return err
				}
			}
			return w.WriteByte('\n')
		default:
			return fmt.Errorf("read message: %w", err)
		}
	}
}
