package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// KeywordsName is Dovecot's keyword file in a Maildir: line "N name" says
// that info letter 'a'+N stands for keyword name (N is 0..25). postkit
// reads and extends the same file, so IMAP keywords set through postkit
// and through Dovecot are the same letters in the file names.
const KeywordsName = "dovecot-keywords"

// ErrTooManyKeywords: a Maildir holds at most 26 keywords (letters a-z).
var ErrTooManyKeywords = errors.New("maildir keyword letters a-z all in use")

// readKeywords returns the keyword names by index (a missing index is "").
func readKeywords(dir string) ([]string, error) {
	data, err := readControlFile(filepath.Join(dir, KeywordsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: read %s: %w", KeywordsName, err)
	}
	return parseKeywords(data), nil
}

// parseKeywords reads a dovecot-keywords file; malformed lines are ignored,
// as Dovecot does.
func parseKeywords(data []byte) []string {
	var kw []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		n, name, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i >= 26 || !validKeyword(name) {
			continue
		}
		for len(kw) <= i {
			kw = append(kw, "")
		}
		kw[i] = name
	}
	return kw
}

// validKeyword: an IMAP flag-keyword atom (RFC 3501 9: no specials, no
// '\\', no controls or spaces).
func validKeyword(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// keywordNames maps the letters of extra to names (unknown letters are
// skipped).
func keywordNames(kw []string, extra string) []string {
	var out []string
	for i := 0; i < len(extra); i++ {
		c := extra[i]
		if c >= 'a' && c <= 'z' && int(c-'a') < len(kw) && kw[c-'a'] != "" {
			out = append(out, kw[c-'a'])
		}
	}
	return out
}

// SetKeywords replaces the message's keywords (its standard flags stay),
// giving new names letters in dovecot-keywords (replaced the way Dovecot
// does: written as dovecot-keywords.lock, created exclusively, then renamed
// over the file). Keyword names compare case-insensitively, as in IMAP.
func (m *Maildir) SetKeywords(ctx context.Context, uid uint32, keywords []string) (Message, error) {
	if err := m.writable(); err != nil {
		return Message{}, err
	}
	for _, k := range keywords {
		if !validKeyword(k) || strings.HasPrefix(k, `\`) {
			return Message{}, fmt.Errorf("mailbox: invalid keyword %q", k)
		}
	}
	unlock, err := m.lockUIDList(ctx)
	if err != nil {
		return Message{}, err
	}
	defer unlock()
	letters, err := m.keywordLetters(ctx, keywords)
	if err != nil {
		return Message{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for try := 0; ; try++ {
		msg, err := m.locateLocked(uid)
		if err != nil {
			return Message{}, err
		}
		// Keep letters that are not keywords (anything outside a-z).
		var extra []byte
		for i := 0; i < len(msg.Extra); i++ {
			if c := msg.Extra[i]; c < 'a' || c > 'z' {
				extra = append(extra, c)
			}
		}
		extra = append(extra, letters...)
		in := Info{Key: msg.Key, Flags: msg.Flags, Extra: string(extra), HasInfo: true}
		newName := "cur/" + in.Name()
		if newName == msg.Name {
			return msg, nil
		}
		err = os.Rename(filepath.Join(m.dir, msg.Name), filepath.Join(m.dir, newName))
		if errors.Is(err, os.ErrNotExist) && try == 0 {
			if _, err := m.syncLocked(); err != nil {
				return Message{}, err
			}
			continue
		}
		if err != nil {
			return Message{}, fmt.Errorf("mailbox: set keywords of %s: %w", msg.Name, err)
		}
		if err := syncDir(filepath.Join(m.dir, "cur")); err != nil {
			return Message{}, err
		}
		parsed, _ := ParseName(filepath.Base(newName))
		kw, err := readKeywords(m.dir)
		if err != nil {
			return Message{}, err
		}
		i, _ := m.find(uid)
		m.msgs[i].Name = newName
		m.msgs[i].Extra = parsed.Extra
		m.msgs[i].Keywords = keywordNames(kw, parsed.Extra)
		m.hub.Notify(Event{Kind: EventFlags, Mailbox: m.dir, UIDs: []uint32{uid}})
		return m.msgs[i], nil
	}
}

// assignKeywords returns the letters for names in kw, adding the names kw
// lacks to it (added reports whether it did).
func assignKeywords(kw []string, names []string) (_ []string, letters string, added bool, err error) {
	var out []byte
names:
	for _, n := range names {
		for i, k := range kw {
			if k != "" && strings.EqualFold(k, n) {
				out = append(out, byte('a'+i))
				continue names
			}
		}
		free := -1
		for i, k := range kw {
			if k == "" {
				free = i
				break
			}
		}
		if free < 0 {
			if len(kw) >= 26 {
				return nil, "", false, ErrTooManyKeywords
			}
			kw = append(kw, "")
			free = len(kw) - 1
		}
		kw[free] = n
		out = append(out, byte('a'+free))
		added = true
	}
	return kw, string(out), added, nil
}

// keywordLetters returns the letters for names, adding missing names to
// dovecot-keywords under Dovecot's dotlock (the file is read again once the
// lock is held, so concurrent additions are not lost).
func (m *Maildir) keywordLetters(ctx context.Context, names []string) (string, error) {
	kw, err := readKeywords(m.dir)
	if err != nil {
		return "", err
	}
	_, letters, added, err := assignKeywords(kw, names)
	if err != nil || !added {
		return letters, err
	}
	path := filepath.Join(m.dir, KeywordsName)
	lock := path + ".lock"
	for attempt := 0; ; attempt++ {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			if t, ok := changeTime(lock); ok && time.Since(t) > 2*time.Minute {
				os.Remove(lock) // stale (Dovecot's own timeout is shorter)
				continue
			}
			if attempt > 500 {
				return "", fmt.Errorf("mailbox: %s held too long", lock)
			}
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return "", err
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("mailbox: create %s: %w", lock, err)
		}
		return m.replaceKeywords(f, names)
	}
}

// replaceKeywords holds the lock file f: it reads the keywords again,
// writes the new list into f and renames it over the file.
func (m *Maildir) replaceKeywords(f *os.File, names []string) (string, error) {
	path := filepath.Join(m.dir, KeywordsName)
	lock := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(lock)
		return "", err
	}
	kw, err := readKeywords(m.dir)
	if err != nil {
		return fail(err)
	}
	kw, letters, added, err := assignKeywords(kw, names)
	if err != nil {
		return fail(err)
	}
	if !added {
		f.Close()
		os.Remove(lock)
		return letters, nil
	}
	var b bytes.Buffer
	for i, k := range kw {
		if k != "" {
			fmt.Fprintf(&b, "%d %s\n", i, k)
		}
	}
	if err := chownFile(f, m.opts.UID, m.opts.GID); err != nil {
		return fail(fmt.Errorf("mailbox: write %s: %w", lock, err))
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		return fail(fmt.Errorf("mailbox: write %s: %w", lock, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("mailbox: write %s: %w", lock, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(lock)
		return "", fmt.Errorf("mailbox: write %s: %w", lock, err)
	}
	if err := os.Rename(lock, path); err != nil {
		os.Remove(lock)
		return "", fmt.Errorf("mailbox: write %s: %w", path, err)
	}
	return letters, syncDir(m.dir)
}
