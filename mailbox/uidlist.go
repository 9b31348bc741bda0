package mailbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// UIDListName is the file beside new/ and cur/ that keeps a Maildir's
// UIDVALIDITY, next UID and the UID of every message (the idea of
// Dovecot's dovecot-uidlist, in postkit's own format):
//
//	postkit-uidlist 1 V<uidvalidity> N<nextuid>
//	<uid> <key>
//	...
//
// one line per message in ascending UID order, <key> being the part of the
// file name before the ':' (unique, and unchanged when flags change). It is
// replaced atomically (written to a temporary file, fsynced, renamed,
// directory fsynced) under the lock file UIDListName+".lock" (flock).
const UIDListName = "postkit-uidlist"

const uidListMagic = "postkit-uidlist"

// UIDList is the parsed content of the uidlist file.
type UIDList struct {
	Validity uint32
	Next     uint32
	Entries  []UIDEntry // ascending UID
}

// UIDEntry maps one message key to its UID.
type UIDEntry struct {
	UID uint32
	Key string
}

// ParseUIDList reads a uidlist file. Every malformed line is an error that
// names it; a reader that gets one starts a new UIDVALIDITY.
func ParseUIDList(r io.Reader) (*UIDList, error) {
	br := bufio.NewReader(r)
	line, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("mailbox: uidlist: header: %w", err)
	}
	f := strings.Split(line, " ")
	if len(f) != 4 || f[0] != uidListMagic || f[1] != "1" || !strings.HasPrefix(f[2], "V") || !strings.HasPrefix(f[3], "N") {
		return nil, fmt.Errorf("mailbox: uidlist: bad header %q", trunc(line))
	}
	l := &UIDList{}
	if l.Validity, err = parseUID(f[2][1:]); err != nil {
		return nil, fmt.Errorf("mailbox: uidlist: bad UIDVALIDITY: %w", err)
	}
	if l.Next, err = parseUID(f[3][1:]); err != nil {
		return nil, fmt.Errorf("mailbox: uidlist: bad next UID: %w", err)
	}
	seen := map[string]bool{}
	var last uint32
	for n := 2; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox: uidlist line %d: %w", n, err)
		}
		us, key, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("mailbox: uidlist line %d: no key in %q", n, trunc(line))
		}
		uid, err := parseUID(us)
		if err != nil {
			return nil, fmt.Errorf("mailbox: uidlist line %d: %w", n, err)
		}
		if uid <= last || uid >= l.Next {
			return nil, fmt.Errorf("mailbox: uidlist line %d: UID %d out of order (previous %d, next %d)", n, uid, last, l.Next)
		}
		in, err := ParseName(key)
		if err != nil || in.HasInfo || strings.ContainsAny(key, " ") {
			return nil, fmt.Errorf("mailbox: uidlist line %d: bad key %q", n, trunc(key))
		}
		if seen[key] {
			return nil, fmt.Errorf("mailbox: uidlist line %d: key %q listed twice", n, trunc(key))
		}
		seen[key] = true
		last = uid
		l.Entries = append(l.Entries, UIDEntry{UID: uid, Key: key})
	}
	return l, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// readLine returns one LF-terminated line (at most 64 KiB) without the LF;
// a last line without LF is an error (a torn write).
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", fmt.Errorf("line too long")
	}
	if err == io.EOF && len(b) > 0 {
		return "", fmt.Errorf("last line not terminated")
	}
	if err != nil {
		return "", err
	}
	return string(b[:len(b)-1]), nil
}

func parseUID(s string) (uint32, error) {
	if s == "" || len(s) > 10 || s[0] == '+' || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", trunc(s))
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad number %q", trunc(s))
	}
	return uint32(v), nil
}

// Marshal renders the file content.
func (l *UIDList) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s 1 V%d N%d\n", uidListMagic, l.Validity, l.Next)
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].UID < l.Entries[j].UID })
	for _, e := range l.Entries {
		b.WriteString(formatUint(e.UID))
		b.WriteByte(' ')
		b.WriteString(e.Key)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeFileAtomic replaces path with data durably.
func writeFileAtomic(path string, data []byte, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := chownFile(f, uid, gid); err != nil {
		return fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mailbox: write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}
