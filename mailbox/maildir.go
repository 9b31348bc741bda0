package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Message is one message of a Maildir as a reader sees it.
type Message struct {
	UID uint32
	// Key is the unique part of the file name (before ':'); it does not
	// change when flags change.
	Key string
	// Name is the file's path relative to the Maildir: "cur/KEY:2,FS" (or
	// "new/KEY" in a read-only Maildir that does not move new mail).
	Name  string
	Flags Flags
	// Extra are info letters other than the standard flags (Dovecot's
	// keywords a-z), kept across flag changes.
	Extra string
	// Keywords are the IMAP keywords the letters a-z of Extra stand for
	// (through dovecot-keywords; see SetKeywords).
	Keywords []string
	// Size is the file size in bytes (LF line ends: IMAP's RFC822.SIZE
	// counts CRLF, so a server adds the line count or converts).
	Size int64
	// InternalDate is the file's modification time (Append sets it).
	InternalDate time.Time
	// Recent is set for messages this *Maildir moved from new/ to cur/.
	Recent bool
}

// Changes is what a Sync found since the previous one.
type Changes struct {
	New      []Message // ascending UID
	Expunged []uint32  // ascending UID
	Flags    []Message // messages whose flags changed, ascending UID
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.New)+len(c.Expunged)+len(c.Flags) == 0 }

// MaildirOpenOptions configure OpenMaildir.
type MaildirOpenOptions struct {
	// Create makes the Maildir (0700) when missing.
	Create bool
	// ReadOnly leaves new mail in new/ (IMAP EXAMINE) and refuses
	// changes. UIDs are still assigned and recorded.
	ReadOnly bool
	// Hub is notified of this Maildir's changes; nil means DefaultHub.
	Hub *Hub
	// Hostname for the unique names of appended messages ("" = os.Hostname()).
	Hostname string
	// UID and GID own created files (<= 0: the process's).
	UID, GID int
}

// Maildir is an open Maildir with stable UIDs. Each IMAP or POP3 session
// opens its own; they coordinate through the uidlist file and its lock,
// so sessions in several processes (and Postfix delivering at the same
// time) see the same UIDs. A Maildir is safe for concurrent use.
type Maildir struct {
	dir  string
	opts MaildirOpenOptions
	hub  *Hub

	mu       sync.Mutex
	validity uint32
	next     uint32
	msgs     []Message // ascending UID
}

// OpenMaildir opens the Maildir at dir and reads its messages (Sync).
func OpenMaildir(ctx context.Context, dir string, opts MaildirOpenOptions) (*Maildir, error) {
	if opts.Create {
		if err := makeMaildir(dir, opts.UID, opts.GID); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"new", "cur", "tmp"} {
		st, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			return nil, fmt.Errorf("mailbox: %s is not a maildir: %w", dir, err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("mailbox: %s is not a maildir: %s is not a directory", dir, d)
		}
	}
	if opts.UID > 0 && os.Geteuid() == 0 {
		// Root acting for a user: a Maildir, or its new/, cur/ or tmp/,
		// reached through a symbolic link must be that user's, so that a
		// link they planted (~/Maildir/.x -> another user's Maildir) does
		// not open someone else's mail.
		for _, d := range []string{".", "new", "cur", "tmp"} {
			p := filepath.Join(dir, d)
			if lst, err := os.Lstat(p); err != nil || lst.Mode()&os.ModeSymlink == 0 {
				continue
			}
			st, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("mailbox: %s: %w", dir, err)
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != opts.UID {
				return nil, fmt.Errorf("mailbox: %s: %w: the link %s leads to a directory of uid %d, not %d", dir, os.ErrPermission, p, sys.Uid, opts.UID)
			}
		}
	}
	m := &Maildir{dir: CleanPath(dir), opts: opts, hub: hubOr(opts.Hub)}
	if _, err := m.Sync(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Path returns the Maildir's directory (absolute).
func (m *Maildir) Path() string { return m.dir }

// UIDValidity returns the UIDVALIDITY.
func (m *Maildir) UIDValidity() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.validity
}

// UIDNext returns the UID the next new message will get.
func (m *Maildir) UIDNext() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next
}

// Messages returns the messages as of the last Sync, ascending UID: the
// IMAP sequence number of Messages()[i] is i+1.
func (m *Maildir) Messages() []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Message(nil), m.msgs...)
}

// Keywords returns every keyword name defined for this Maildir (IMAP's
// PERMANENTFLAGS/FLAGS list), in letter order.
func (m *Maildir) Keywords() ([]string, error) {
	kw, err := readKeywords(m.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range kw {
		if k != "" {
			out = append(out, k)
		}
	}
	return out, nil
}

// Message returns the message with uid as of the last Sync.
func (m *Maildir) Message(uid uint32) (Message, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.find(uid); ok {
		return m.msgs[i], true
	}
	return Message{}, false
}

func (m *Maildir) find(uid uint32) (int, bool) {
	i := sort.Search(len(m.msgs), func(i int) bool { return m.msgs[i].UID >= uid })
	return i, i < len(m.msgs) && m.msgs[i].UID == uid
}

// lockUIDList takes the Maildir's uidlist lock (flock on a lock file; each
// call opens its own descriptor, so it excludes goroutines too).
func (m *Maildir) lockUIDList(ctx context.Context) (func(), error) {
	p := filepath.Join(m.dir, UIDListName+".lock")
	f, err := openLockFile(p, m.opts.UID, m.opts.GID)
	if err != nil {
		return nil, err
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("mailbox: lock %s: %w", p, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("mailbox: lock %s: %w", p, ctx.Err())
		case <-t.C:
		}
		if wait < 20*time.Millisecond {
			wait *= 2
		}
	}
}

// Sync rescans new/ and cur/, moves new mail to cur/ (unless read-only),
// gives UIDs to messages without one, records them in the uidlist and
// reports what changed since the previous Sync of this *Maildir. A Sync
// sends no hub event: the change it finds was announced by whoever made it.
func (m *Maildir) Sync(ctx context.Context) (Changes, error) {
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Changes{}, err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncLocked()
}

type fileInfo struct {
	in    Info
	name  string // "cur/..." or "new/..."
	size  int64
	mtime time.Time
	moved bool
}

// scan lists new/ and cur/, moving new/ files to cur/ when allowed.
func (m *Maildir) scan() (map[string]fileInfo, error) {
	files := map[string]fileInfo{}
	newNames, err := readNames(filepath.Join(m.dir, "new"))
	if err != nil {
		return nil, err
	}
	moved := map[string]bool{}
	var newOnly []string
	for _, n := range newNames {
		in, err := ParseName(n)
		if err != nil {
			continue // not a message file (dot files, junk): ignore
		}
		if m.opts.ReadOnly {
			newOnly = append(newOnly, n)
			continue
		}
		if !in.HasInfo {
			in.HasInfo = true
		}
		dst := in.Name()
		err = os.Rename(filepath.Join(m.dir, "new", n), filepath.Join(m.dir, "cur", dst))
		if err == nil {
			moved[in.Key] = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("mailbox: move %s to cur/: %w", n, err)
		}
	}
	if len(moved) > 0 {
		if err := syncDir(filepath.Join(m.dir, "cur")); err != nil {
			return nil, err
		}
	}
	curNames, err := readNames(filepath.Join(m.dir, "cur"))
	if err != nil {
		return nil, err
	}
	// A message file's content never changes: a name already known needs
	// no stat.
	known := make(map[string]*Message, len(m.msgs))
	for i := range m.msgs {
		known[m.msgs[i].Name] = &m.msgs[i]
	}
	add := func(sub, n string) {
		in, err := ParseName(n)
		if err != nil {
			return
		}
		if _, dup := files[in.Key]; dup {
			return // the same key in new/ and cur/: keep the cur/ one
		}
		if k := known[sub+"/"+n]; k != nil {
			files[in.Key] = fileInfo{in: in, name: sub + "/" + n, size: k.Size, mtime: k.InternalDate}
			return
		}
		// Lstat: a symbolic link is not a message (a server running as
		// root would read whatever it points to for the user).
		st, err := os.Lstat(filepath.Join(m.dir, sub, n))
		if err != nil || !st.Mode().IsRegular() {
			return
		}
		files[in.Key] = fileInfo{in: in, name: sub + "/" + n, size: st.Size(), mtime: st.ModTime(), moved: moved[in.Key]}
	}
	for _, n := range curNames {
		add("cur", n)
	}
	for _, n := range newOnly {
		add("new", n)
	}
	return files, nil
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("mailbox: read %s: %w", dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("mailbox: read %s: %w", dir, err)
	}
	return names, nil
}

// lastValidity remembers, per Maildir path, the UIDVALIDITY last seen in
// this process, so that a uidlist lost and recreated within one second
// still gets a new value.
var lastValidity sync.Map

// headerOnly returns the first line of a uidlist.
func headerOnly(data []byte) []byte {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i+1]
	}
	return nil
}

// readUIDList returns the recorded list, or a fresh one (new UIDVALIDITY)
// when the file is missing or unreadable.
func (m *Maildir) readUIDList() (*UIDList, bool, error) {
	p := filepath.Join(m.dir, UIDListName)
	data, err := readControlFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("mailbox: read %s: %w", p, err)
	}
	floor := m.validity
	if err == nil {
		l, perr := ParseUIDList(bytes.NewReader(data))
		if perr == nil {
			lastValidity.Store(m.dir, l.Validity)
			return l, false, nil
		}
		if h, herr := ParseUIDList(bytes.NewReader(headerOnly(data))); herr == nil && h.Validity > floor {
			floor = h.Validity
		}
	}
	// Missing or corrupt: start over with a UIDVALIDITY greater than any
	// this Maildir is known to have had (clients must drop their caches).
	return &UIDList{Validity: m.newValidity(floor), Next: 1}, true, nil
}

// newValidity returns a UIDVALIDITY above floor and above any this process
// used for the Maildir.
func (m *Maildir) newValidity(floor uint32) uint32 {
	if v, ok := lastValidity.Load(m.dir); ok && v.(uint32) > floor {
		floor = v.(uint32)
	}
	v := uint32(time.Now().Unix())
	if v <= floor {
		v = floor + 1
	}
	if v == 0 {
		v = 1 // wrapped around: 0 is not a valid UIDVALIDITY
	}
	lastValidity.Store(m.dir, v)
	return v
}

func (m *Maildir) syncLocked() (Changes, error) {
	files, err := m.scan()
	if err != nil {
		return Changes{}, err
	}
	l, dirty, err := m.readUIDList()
	if err != nil {
		return Changes{}, err
	}
	// A recorded key whose file is gone may just have been renamed by a
	// process that does not take our lock (a flag change by mutt or
	// Dovecot): look once more before dropping it.
	for _, e := range l.Entries {
		if _, ok := files[e.Key]; !ok {
			if files, err = m.scan(); err != nil {
				return Changes{}, err
			}
			break
		}
	}
	known := map[string]bool{}
	kept := l.Entries[:0]
	for _, e := range l.Entries {
		if _, ok := files[e.Key]; ok {
			kept = append(kept, e)
			known[e.Key] = true
		} else {
			dirty = true
		}
	}
	l.Entries = kept
	var fresh []string
	for k := range files {
		if !known[k] {
			fresh = append(fresh, k)
		}
	}
	sortFresh(fresh, files)
	if uint64(l.Next)+uint64(len(fresh)) > uint64(^uint32(0)) {
		// UIDs exhausted (RFC 3501 2.3.1.1): renumber everything under a
		// new UIDVALIDITY.
		l = &UIDList{Validity: m.newValidity(l.Validity), Next: 1}
		fresh = fresh[:0]
		for k := range files {
			fresh = append(fresh, k)
		}
		sortFresh(fresh, files)
	}
	for _, k := range fresh {
		l.Entries = append(l.Entries, UIDEntry{UID: l.Next, Key: k})
		l.Next++
		dirty = true
	}
	if dirty {
		if err := writeFileAtomic(filepath.Join(m.dir, UIDListName), l.Marshal(), m.opts.UID, m.opts.GID); err != nil {
			return Changes{}, err
		}
	}
	// Compare with this object's view.
	var ch Changes
	old := m.msgs
	if m.validity != 0 && m.validity != l.Validity {
		for _, o := range old {
			ch.Expunged = append(ch.Expunged, o.UID)
		}
		old = nil
	}
	kw, err := readKeywords(m.dir)
	if err != nil {
		return Changes{}, err
	}
	prev := map[uint32]Message{}
	for _, o := range old {
		prev[o.UID] = o
	}
	msgs := make([]Message, 0, len(l.Entries))
	for _, e := range l.Entries {
		fi := files[e.Key]
		msg := Message{UID: e.UID, Key: e.Key, Name: fi.name, Flags: fi.in.Flags, Extra: fi.in.Extra, Keywords: keywordNames(kw, fi.in.Extra), Size: fi.size, InternalDate: fi.mtime}
		if o, ok := prev[e.UID]; ok {
			msg.Recent = o.Recent
			if o.Flags != msg.Flags || o.Extra != msg.Extra || fmt.Sprint(o.Keywords) != fmt.Sprint(msg.Keywords) {
				ch.Flags = append(ch.Flags, msg)
			}
			delete(prev, e.UID)
		} else {
			msg.Recent = fi.moved
			ch.New = append(ch.New, msg)
		}
		msgs = append(msgs, msg)
	}
	for uid := range prev {
		ch.Expunged = append(ch.Expunged, uid)
	}
	sort.Slice(ch.Expunged, func(i, j int) bool { return ch.Expunged[i] < ch.Expunged[j] })
	m.msgs = msgs
	m.validity = l.Validity
	m.next = l.Next
	return ch, nil
}

// sortFresh orders unnumbered keys by delivery: file time, then name.
func sortFresh(fresh []string, files map[string]fileInfo) {
	sort.Slice(fresh, func(i, j int) bool {
		a, b := files[fresh[i]], files[fresh[j]]
		if !a.mtime.Equal(b.mtime) {
			return a.mtime.Before(b.mtime)
		}
		return fresh[i] < fresh[j]
	})
}

// locate returns the current message for uid under the locks, rescanning
// once when its file has been renamed behind our back.
func (m *Maildir) locateLocked(uid uint32) (Message, error) {
	i, ok := m.find(uid)
	if ok {
		if _, err := os.Lstat(filepath.Join(m.dir, m.msgs[i].Name)); err == nil {
			return m.msgs[i], nil
		}
	}
	if _, err := m.syncLocked(); err != nil {
		return Message{}, err
	}
	if i, ok = m.find(uid); ok {
		return m.msgs[i], nil
	}
	return Message{}, fmt.Errorf("mailbox: %s UID %d: %w", m.dir, uid, ErrNoMessage)
}

// Open returns the message's file for reading (the caller closes it) and
// its current state.
func (m *Maildir) Open(ctx context.Context, uid uint32) (*os.File, Message, error) {
	m.mu.Lock()
	i, ok := m.find(uid)
	var msg Message
	if ok {
		msg = m.msgs[i]
	}
	m.mu.Unlock()
	if ok {
		if f, err := openMessage(filepath.Join(m.dir, msg.Name)); err == nil {
			return f, msg, nil
		}
	}
	// Renamed or gone: look again under the lock.
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return nil, Message{}, err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	msg, err = m.locateLocked(uid)
	if err != nil {
		return nil, Message{}, err
	}
	f, err := openMessage(filepath.Join(m.dir, msg.Name))
	if err != nil {
		return nil, Message{}, fmt.Errorf("mailbox: open %s: %w", msg.Name, err)
	}
	return f, msg, nil
}

// openMessage opens a message file for reading: not through a symbolic
// link, never waiting on a FIFO, and only a regular file.
func openMessage(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: p, Err: syscall.EINVAL}
	}
	return f, nil
}

func (m *Maildir) writable() error {
	if m.opts.ReadOnly {
		return fmt.Errorf("mailbox: %s is open read-only", m.dir)
	}
	return nil
}

// SetFlags replaces the flags of the message (keeping its extra letters)
// by renaming its file, and announces EventFlags.
func (m *Maildir) SetFlags(ctx context.Context, uid uint32, flags Flags) (Message, error) {
	if err := m.writable(); err != nil {
		return Message{}, err
	}
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Message{}, err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for try := 0; ; try++ {
		msg, err := m.locateLocked(uid)
		if err != nil {
			return Message{}, err
		}
		if msg.Flags == flags {
			return msg, nil
		}
		in := Info{Key: msg.Key, Flags: flags, Extra: msg.Extra, HasInfo: true}
		newName := "cur/" + in.Name()
		err = os.Rename(filepath.Join(m.dir, msg.Name), filepath.Join(m.dir, newName))
		if errors.Is(err, os.ErrNotExist) && try == 0 {
			if _, err := m.syncLocked(); err != nil {
				return Message{}, err
			}
			continue
		}
		if err != nil {
			return Message{}, fmt.Errorf("mailbox: set flags of %s: %w", msg.Name, err)
		}
		if err := syncDir(filepath.Join(m.dir, "cur")); err != nil {
			return Message{}, err
		}
		i, _ := m.find(uid)
		m.msgs[i].Name = newName
		m.msgs[i].Flags = flags
		msg = m.msgs[i]
		m.hub.Notify(Event{Kind: EventFlags, Mailbox: m.dir, UIDs: []uint32{uid}})
		return msg, nil
	}
}

// Expunge removes the messages (unknown UIDs are ignored), records it in
// the uidlist and announces EventExpunge.
func (m *Maildir) Expunge(ctx context.Context, uids ...uint32) error {
	if err := m.writable(); err != nil {
		return err
	}
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var done []uint32
	for _, uid := range uids {
		msg, err := m.locateLocked(uid)
		if errors.Is(err, ErrNoMessage) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(m.dir, msg.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("mailbox: expunge %s: %w", msg.Name, err)
		}
		done = append(done, uid)
	}
	if len(done) == 0 {
		return nil
	}
	if err := syncDir(filepath.Join(m.dir, "cur")); err != nil {
		return err
	}
	if _, err := m.syncLocked(); err != nil {
		return err
	}
	m.hub.Notify(Event{Kind: EventExpunge, Mailbox: m.dir, UIDs: done})
	return nil
}

// Append stores a message (LF line ends) with flags and an internal date
// (zero = now) directly in cur/, gives it the next UID and announces
// EventNew. The file name follows DeliverMaildir's.
func (m *Maildir) Append(ctx context.Context, r io.Reader, flags Flags, date time.Time) (Message, error) {
	if err := m.writable(); err != nil {
		return Message{}, err
	}
	tmp, key, err := m.writeTmp(ctx, func(f *os.File) error { return copyLimited(ctx, f, r, 0) })
	if err != nil {
		return Message{}, err
	}
	defer os.Remove(tmp)
	if date.IsZero() {
		date = time.Now()
	}
	if err := os.Chtimes(tmp, date, date); err != nil {
		return Message{}, fmt.Errorf("mailbox: append: %w", err)
	}
	return m.adopt(ctx, tmp, Info{Key: key, Flags: flags, HasInfo: true})
}

// writeTmp creates tmp/<unique>, fills it with fill, fsyncs it, and returns
// its path and the key it will have in cur/.
func (m *Maildir) writeTmp(ctx context.Context, fill func(*os.File) error) (string, string, error) {
	host, err := uniqueHost(m.opts.Hostname)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	var f *os.File
	var tmp string
	for {
		tmp = filepath.Join(m.dir, "tmp", fmt.Sprintf("%d.P%dQ%d.%s", now.Unix(), os.Getpid(), tmpSeq.Add(1), host))
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("mailbox: create %s: %w", tmp, err)
		}
		break
	}
	fail := func(err error) (string, string, error) {
		f.Close()
		os.Remove(tmp)
		return "", "", fmt.Errorf("mailbox: write %s: %w", tmp, err)
	}
	if err := chownFile(f, m.opts.UID, m.opts.GID); err != nil {
		return fail(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fail(err)
	}
	if err := fill(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", "", fmt.Errorf("mailbox: write %s: %w", tmp, err)
	}
	key := fmt.Sprintf("%d.V%xI%xM%d.%s", now.Unix(), uint64(st.Dev), st.Ino, now.Nanosecond()/1000, host)
	return tmp, key, nil
}

// adopt links the finished file src into cur/ under in.Name(), assigns its
// UID and announces it.
func (m *Maildir) adopt(ctx context.Context, src string, in Info) (Message, error) {
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Message{}, err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	dst := filepath.Join(m.dir, "cur", in.Name())
	if err := os.Link(src, dst); err != nil {
		return Message{}, fmt.Errorf("mailbox: link to %s: %w", dst, err)
	}
	if err := syncDir(filepath.Join(m.dir, "cur")); err != nil {
		return Message{}, err
	}
	return m.claimLocked(in.Key)
}

// claim numbers the file with key that was just put into cur/ and
// announces it.
func (m *Maildir) claim(ctx context.Context, key string) (Message, error) {
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Message{}, err
	}
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claimLocked(key)
}

func (m *Maildir) claimLocked(key string) (Message, error) {
	if _, err := m.syncLocked(); err != nil {
		return Message{}, err
	}
	for i := len(m.msgs) - 1; i >= 0; i-- {
		if m.msgs[i].Key == key {
			msg := m.msgs[i]
			m.hub.Notify(Event{Kind: EventNew, Mailbox: m.dir, UIDs: []uint32{msg.UID}})
			return msg, nil
		}
	}
	return Message{}, fmt.Errorf("mailbox: %s: message %s vanished after it was stored", m.dir, key)
}

// Copy copies the message into dst (which may be m itself) as a new file
// with its own unique name, the same flags, keywords letters and internal
// date, and returns the copy with its UID in dst. (Keyword letters are
// per-Maildir: between folders with different dovecot-keywords files the
// IMAP server re-applies keywords with SetKeywords.)
func (m *Maildir) Copy(ctx context.Context, uid uint32, dst *Maildir) (Message, error) {
	if err := dst.writable(); err != nil {
		return Message{}, err
	}
	src, msg, err := m.Open(ctx, uid)
	if err != nil {
		return Message{}, err
	}
	defer src.Close()
	tmp, key, err := dst.writeTmp(ctx, func(f *os.File) error { _, err := io.Copy(f, src); return err })
	if err != nil {
		return Message{}, err
	}
	defer os.Remove(tmp)
	if err := os.Chtimes(tmp, msg.InternalDate, msg.InternalDate); err != nil {
		return Message{}, fmt.Errorf("mailbox: copy: %w", err)
	}
	extra, err := dst.translateExtra(ctx, m, msg)
	if err != nil {
		return Message{}, err
	}
	return dst.adopt(ctx, tmp, Info{Key: key, Flags: msg.Flags, Extra: extra, HasInfo: true})
}

// translateExtra returns the info letters msg from src gets in m: its
// letters outside a-z as they are, and its keywords under m's letters.
func (m *Maildir) translateExtra(ctx context.Context, src *Maildir, msg Message) (string, error) {
	if src.dir == m.dir {
		return msg.Extra, nil
	}
	var extra []byte
	for i := 0; i < len(msg.Extra); i++ {
		if c := msg.Extra[i]; c < 'a' || c > 'z' {
			extra = append(extra, c)
		}
	}
	letters, err := m.keywordLetters(ctx, msg.Keywords)
	if err != nil {
		return "", err
	}
	return string(extra) + letters, nil
}

// Move moves the message into dst by renaming its file (same file system),
// expunging it here; it returns the message with its UID in dst.
func (m *Maildir) Move(ctx context.Context, uid uint32, dst *Maildir) (Message, error) {
	if err := m.writable(); err != nil {
		return Message{}, err
	}
	if err := dst.writable(); err != nil {
		return Message{}, err
	}
	if dst.dir == m.dir {
		return Message{}, fmt.Errorf("mailbox: move within %s", m.dir)
	}
	// Keyword letters for dst first (that takes dst's keyword lock, not
	// ours).
	snap, ok := m.Message(uid)
	if !ok {
		return Message{}, fmt.Errorf("mailbox: %s UID %d: %w", m.dir, uid, ErrNoMessage)
	}
	extra, err := dst.translateExtra(ctx, m, snap)
	if err != nil {
		return Message{}, err
	}
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Message{}, err
	}
	m.mu.Lock()
	msg, err := m.locateLocked(uid)
	if err != nil {
		m.mu.Unlock()
		unlock()
		return Message{}, err
	}
	// Straight into dst's cur/: the file is complete, and a crash between
	// here and dst's uidlist update only leaves a message without a UID,
	// which dst's next Sync numbers.
	in := Info{Key: msg.Key, Flags: msg.Flags, Extra: extra, HasInfo: true}
	target := filepath.Join(dst.dir, "cur", in.Name())
	if _, serr := os.Lstat(target); serr == nil {
		err = fmt.Errorf("%s exists", target)
	} else {
		err = os.Rename(filepath.Join(m.dir, msg.Name), target)
	}
	if err == nil {
		err = syncDir(filepath.Join(dst.dir, "cur"))
	}
	if err == nil {
		err = syncDir(filepath.Join(m.dir, "cur"))
	}
	if err == nil {
		_, err = m.syncLocked()
	}
	m.mu.Unlock()
	unlock()
	if err != nil {
		return Message{}, fmt.Errorf("mailbox: move %s: %w", msg.Name, err)
	}
	m.hub.Notify(Event{Kind: EventExpunge, Mailbox: m.dir, UIDs: []uint32{uid}})
	return dst.claim(ctx, msg.Key)
}

// SessionLockName is the lock file LockSession flocks.
const SessionLockName = "postkit-session.lock"

// LockSession takes the Maildir's exclusive session lock without waiting:
// POP3 allows one session per mailbox (RFC 1939 8: the maildrop is locked
// for the session), so a second POP3 login gets ErrLocked. It does not
// keep deliveries or IMAP sessions out. The returned function releases it.
func (m *Maildir) LockSession() (func(), error) {
	p := filepath.Join(m.dir, SessionLockName)
	f, err := openLockFile(p, m.opts.UID, m.opts.GID)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("mailbox: %w %s: a session holds it", ErrLocked, m.dir)
		}
		return nil, fmt.Errorf("mailbox: lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// openLockFile opens the flock'ed lock file p of a Maildir, creating it
// (mode 0600, owned by uid and gid) when it is missing. Only a file made
// here is chowned; an existing one is opened read-only, without following
// a symbolic link, and must be a regular file: a link the mailbox's owner
// planted (to /etc/shadow, say) gives them nothing when a server running
// as root opens their Maildir.
func openLockFile(p string, uid, gid int) (*os.File, error) {
	for try := 0; ; try++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			if err := chownFile(f, uid, gid); err != nil {
				f.Close()
				return nil, fmt.Errorf("mailbox: chown %s: %w", p, err)
			}
			return f, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("mailbox: open %s: %w", p, err)
		}
		f, err = os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if errors.Is(err, os.ErrNotExist) && try == 0 {
			continue // removed in between: create it
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: open %s: %w", p, err)
		}
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("mailbox: open %s: not a regular file", p)
		}
		return f, nil
	}
}

// readControlFile reads one of the files beside a Maildir's new/ and cur/
// (uidlist, dovecot-keywords, subscriptions) without following a symbolic
// link and only if it is a regular file: a server running as root would
// otherwise hand the user lines of whatever file their link names.
func readControlFile(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: p, Err: syscall.EINVAL}
	}
	return io.ReadAll(f)
}
