package pickup

// The maildrop directory: how a submission gets in (durably) and how the
// service is told about it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// DirMode is the mode Create gives the maildrop directory: owned by the
// service's user, group-writable and searchable for the submitting users'
// group, not listable by them, sticky (a user cannot remove another's
// file) and setgid (new files belong to the directory's group, so the
// service, a member of that group, can read them). It plays the role of
// Postfix's setgid postdrop helper and its 1730 postfix:postdrop maildrop,
// without a privileged program: sendmail writes the file itself.
const DirMode = fs.ModeDir | fs.ModeSticky | fs.ModeSetgid | 0o730

// FileMode is the mode of a submitted file: readable by the directory's
// group (the service), by nobody else.
const FileMode = 0o640

// Subdirectories of the maildrop directory where the service moves files
// it cannot feed to cleanup. Names starting with a dot are never picked
// up: temporary files and the wake-up socket.
const (
	CorruptDir  = "corrupt"  // unreadable or damaged files (ErrCorrupt)
	RejectedDir = "rejected" // messages cleanup rejected (*cleanup.RejectError)
	// WakeupSocket is the unix datagram socket in the maildrop directory
	// that the service listens on; a writer sends one empty datagram
	// after a submission so the file is picked up at once rather than
	// at the next poll. A missing or dead socket only delays pickup.
	WakeupSocket = ".pickup"
	// MarkerFile marks a directory as a postkit maildrop. Postfix's
	// maildrop sits at the same place ($queue_directory/maildrop) with
	// another file format; without the marker, sendmail refuses to write
	// and the service refuses to scan, so neither system takes the
	// other's files for corrupt ones.
	MarkerFile = ".postkit-maildrop"
	tmpPrefix  = ".tmp-"
)

// Create makes the maildrop directory (and its corrupt and rejected
// subdirectories) if it does not exist, and sets mode (DirMode when 0) on
// a directory it created. An existing directory's mode is left alone: the
// administrator may have chosen another (for example 1733, any user may
// submit).
func Create(dir string, mode fs.FileMode) error {
	if mode == 0 {
		mode = DirMode
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("pickup: create maildrop %s: %w", dir, err)
		}
		// Chmod: MkdirAll's mode is filtered by the umask and cannot
		// carry the sticky and setgid bits.
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("pickup: set mode of maildrop %s: %w", dir, err)
		}
	} else if err != nil {
		return fmt.Errorf("pickup: maildrop %s: %w", dir, err)
	}
	for _, sub := range []string{CorruptDir, RejectedDir} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pickup: create %s/%s: %w", dir, sub, err)
		}
	}
	marker := filepath.Join(dir, MarkerFile)
	if _, err := os.Stat(marker); errors.Is(err, fs.ErrNotExist) {
		data := []byte(Magic + "\n")
		if err := os.WriteFile(marker, data, 0o644); err != nil {
			return fmt.Errorf("pickup: mark maildrop %s: %w", dir, err)
		}
	}
	return nil
}

// Check says whether dir is a postkit maildrop (made by Create): an
// error names what is wrong.
func Check(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pickup: maildrop %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("pickup: maildrop %s is not a directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err != nil {
		return fmt.Errorf("pickup: %s is not a postkit maildrop (no %s; Postfix's own maildrop has the same name, run pickup.Create for a new one): %w", dir, MarkerFile, err)
	}
	return nil
}

// Writer writes one submission into the maildrop directory: content
// first, the envelope at Commit. Until Commit returns nil the file is a
// temporary one (a name starting with a dot) that the service ignores.
type Writer struct {
	dir, name, tmp string
	f              *os.File
	enc            *Encoder
	done           bool
}

// NewWriter starts a submission. Its Name, known at once, is the file
// name the message will have in dir.
func NewWriter(dir string, arrival time.Time) (*Writer, error) {
	name, err := newName(arrival)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, name: name, tmp: filepath.Join(dir, tmpPrefix+name)}
	w.f, err = os.OpenFile(w.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return nil, fmt.Errorf("pickup: create maildrop file: %w", err)
	}
	w.enc, err = NewEncoder(w.f)
	if err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// Name is the file's name in the maildrop directory.
func (w *Writer) Name() string { return w.name }

// Write appends content: CRLF-terminated lines.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("pickup: write to a finished maildrop file")
	}
	return w.enc.Write(p)
}

// Size is the content length written so far.
func (w *Writer) Size() int64 { return w.enc.Size() }

// Commit writes the envelope and makes the file durable: fsync, rename to
// its final name, fsync of the directory. Once it returns nil the message
// survives a crash and the service will pick it up. On error nothing is
// left behind.
func (w *Writer) Commit(ctx context.Context, env *Envelope) error {
	if w.done {
		return errors.New("pickup: maildrop file already finished")
	}
	if err := ctx.Err(); err != nil {
		w.Abort()
		return err
	}
	w.done = true
	fail := func(err error) error {
		w.f.Close()
		os.Remove(w.tmp)
		return err
	}
	if err := w.enc.Close(env); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(fmt.Errorf("pickup: fsync maildrop file: %w", err))
	}
	if err := w.f.Close(); err != nil {
		return fail(fmt.Errorf("pickup: close maildrop file: %w", err))
	}
	final := filepath.Join(w.dir, w.name)
	if err := os.Rename(w.tmp, final); err != nil {
		os.Remove(w.tmp)
		return fmt.Errorf("pickup: rename maildrop file into place: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		// Whether the name survives a crash is what the fsync was
		// for; rather than report a failure for a message that may
		// still be delivered, take it back.
		os.Remove(final)
		return err
	}
	return nil
}

// Abort removes the unfinished file.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pickup: remove unfinished maildrop file: %w", err)
	}
	return nil
}

// Submit writes one message (content: CRLF-terminated lines) into the
// maildrop directory with NewWriter and Commit, and returns the file's
// name once it is durable.
func Submit(ctx context.Context, dir string, env *Envelope, content io.Reader) (string, error) {
	w, err := NewWriter(dir, env.Arrival)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, ctxReader{ctx, content}); err != nil {
		w.Abort()
		return "", fmt.Errorf("pickup: write maildrop file: %w", err)
	}
	if err := w.Commit(ctx, env); err != nil {
		return "", err
	}
	return w.Name(), nil
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// newName is a file name that sorts by arrival: 16 hex digits of the
// arrival time in nanoseconds and 8 random hex digits.
func newName(t time.Time) (string, error) {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("pickup: random file name: %w", err)
	}
	return fmt.Sprintf("%016x%s", uint64(t.UnixNano()), hex.EncodeToString(r[:])), nil
}

// validName says whether a directory entry is a maildrop file the service
// should pick up.
func validName(name string) bool {
	return name != "" && !strings.HasPrefix(name, ".") && name != CorruptDir && name != RejectedDir
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pickup: open maildrop directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pickup: fsync maildrop directory: %w", err)
	}
	return nil
}

// Wake tells a service watching dir that a file is there. It never
// blocks and reports no error: without a listener the file waits for the
// next poll.
func Wake(dir string) {
	addr := &net.UnixAddr{Name: filepath.Join(dir, WakeupSocket), Net: "unixgram"}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write([]byte{0})
}

// fileOwner returns the owner uid of a file's stat result, or -1.
func fileOwner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
