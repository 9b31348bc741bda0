package mailbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// MaildirOptions configure DeliverMaildir.
type MaildirOptions struct {
	// Create makes dir and its tmp/, new/ and cur/ (mode 0700) when missing.
	Create bool
	// Hostname is the right-hand part of the unique name; "" means
	// os.Hostname(), as Postfix uses gethostname().
	Hostname string
	// Time is the delivery time in the unique name; zero means now.
	Time time.Time
	// SizeLimit > 0: a message larger than this many bytes fails with
	// ErrTooLarge (Postfix's per-file limit on maildir files).
	SizeLimit int64
	// UID and GID own the created files and directories. A value <= 0
	// leaves that id as the process's (so the zero value means "don't
	// chown"); set both to deliver as a user when running as root.
	UID, GID int
	// Hub is notified once the message is in new/; nil means DefaultHub.
	Hub *Hub
}

// testHookLinked, when set by a test, is called right after the link into
// new/.
var testHookLinked func(newPath string)

// tmpSeq makes the tmp/ names of one process unique: Postfix uses one
// process per delivery and needs only the pid, a Go process delivers from
// many goroutines at once.
var tmpSeq atomic.Uint64

// DeliverMaildir stores the message read from r (LF line ends, the exact
// bytes to store) in the Maildir dir, the way Postfix's local(8) and
// virtual(8) do (postfix-spec §8.3):
//
//  1. create tmp/SECONDS.PpidQn.HOST with O_CREAT|O_EXCL, mode 0600;
//  2. copy the message, fsync the file;
//  3. link it to new/SECONDS.VdevIinoMusec.HOST (device and inode in hex,
//     microseconds in decimal, from one clock reading taken at the start),
//     unlink the tmp/ name, fsync new/.
//
// The fsync of new/ is shared: deliveries into one Maildir that link
// while an fsync of new/ runs wait for it and then share the next one,
// which begins after all their links (as a journal's group commit). Each
// returns only after an fsync of new/ that began after its own link, and
// every delivery served by a failed fsync gets its error.
//
// It returns the path of the file in new/. On any error nothing is left
// in tmp/ or new/.
func DeliverMaildir(ctx context.Context, dir string, r io.Reader, opts MaildirOptions) (path string, err error) {
	start := opts.Time
	if start.IsZero() {
		start = time.Now()
	}
	host, err := uniqueHost(opts.Hostname)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("mailbox: maildir delivery to %s: %w", dir, err)
	}
	tmpDir := filepath.Join(dir, "tmp")
	newDir := filepath.Join(dir, "new")
	if opts.Create {
		if err := makeMaildir(dir, opts.UID, opts.GID); err != nil {
			return "", err
		}
	}
	sec := start.Unix()
	usec := start.Nanosecond() / 1000
	var f *os.File
	var tmpPath string
	for {
		tmpPath = filepath.Join(tmpDir, fmt.Sprintf("%d.P%dQ%d.%s", sec, os.Getpid(), tmpSeq.Add(1), host))
		f, err = os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue // a left-over from a crashed delivery: take the next number
		}
		if err != nil {
			return "", fmt.Errorf("mailbox: create maildir file %s: %w", tmpPath, err)
		}
		break
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmpPath) // after the link (or on failure): tmp/ is left clean
	}()
	if err := chownFile(f, opts.UID, opts.GID); err != nil {
		return "", fmt.Errorf("mailbox: create maildir file %s: %w", tmpPath, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", fmt.Errorf("mailbox: fstat %s: %w", tmpPath, err)
	}
	if err := copyLimited(ctx, f, r, opts.SizeLimit); err != nil {
		return "", fmt.Errorf("mailbox: create maildir file %s: %w", tmpPath, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("mailbox: create maildir file %s: fsync: %w", tmpPath, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return "", fmt.Errorf("mailbox: create maildir file %s: %w", tmpPath, err)
	}
	f = nil
	name := fmt.Sprintf("%d.V%xI%xM%d.%s", sec, uint64(st.Dev), st.Ino, usec, host)
	newPath := filepath.Join(newDir, name)
	if err := os.Link(tmpPath, newPath); err != nil {
		return "", fmt.Errorf("mailbox: link to %s: %w", newPath, err)
	}
	if testHookLinked != nil {
		testHookLinked(newPath)
	}
	// The fsync of new/ is shared with concurrent deliveries to this
	// Maildir (dirsync.go); it begins after the link, so the name is
	// durable when this returns.
	if err := syncDirShared(newDir); err != nil {
		os.Remove(newPath)
		return "", err
	}
	hubOr(opts.Hub).Notify(Event{Kind: EventNew, Mailbox: dir})
	return newPath, nil
}

// uniqueHost returns the host part of unique names. A host name with '/'
// or ':' (which Postfix, refusing invalid host names, never sees) is
// escaped as the Maildir convention asks: '/' as \057, ':' as \072.
func uniqueHost(h string) (string, error) {
	if h == "" {
		var err error
		if h, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("mailbox: hostname: %w", err)
		}
	}
	if h == "" {
		return "", errors.New("mailbox: empty hostname")
	}
	h = strings.ReplaceAll(h, "/", `\057`)
	h = strings.ReplaceAll(h, ":", `\072`)
	for _, c := range []byte(h) {
		if c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("mailbox: hostname %q has a control character", h)
		}
	}
	return h, nil
}

// makeMaildir creates dir, tmp/, new/ and cur/ with mode 0700.
func makeMaildir(dir string, uid, gid int) error {
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			if errors.Is(err, os.ErrNotExist) && d == dir {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return fmt.Errorf("mailbox: create maildir %s: %w", d, err)
				}
			} else {
				return fmt.Errorf("mailbox: create maildir %s: %w", d, err)
			}
		}
		if uid > 0 || gid > 0 {
			if err := os.Lchown(d, idOr(uid), idOr(gid)); err != nil {
				return fmt.Errorf("mailbox: chown %s: %w", d, err)
			}
		}
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func idOr(id int) int {
	if id > 0 {
		return id
	}
	return -1
}

func chownFile(f *os.File, uid, gid int) error {
	if uid > 0 || gid > 0 {
		return f.Chown(idOr(uid), idOr(gid))
	}
	return nil
}

// syncDir fsyncs a directory, making a new entry in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mailbox: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mailbox: fsync directory %s: %w", dir, err)
	}
	return nil
}

// copyLimited copies r to w; more than limit bytes (limit > 0) is
// ErrTooLarge. ctx is checked between blocks.
func copyLimited(ctx context.Context, w io.Writer, r io.Reader, limit int64) error {
	bw := bufio.NewWriterSize(w, 64*1024)
	buf := make([]byte, 32*1024)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			n += int64(m)
			if limit > 0 && n > limit {
				return fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, limit)
			}
			if _, err := bw.Write(buf[:m]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return bw.Flush()
		}
		if rerr != nil {
			return fmt.Errorf("read message: %w", rerr)
		}
	}
}

// formatUint is strconv.FormatUint for uint32 values.
func formatUint(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
