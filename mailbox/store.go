package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Separator is the hierarchy separator of folder names: Maildir++ keeps
// folder "Archive.2024" in the directory ROOT/.Archive.2024 (Dovecot's
// default for LAYOUT=maildir++ uses the same separator).
const Separator = '.'

// Inbox is the name of the root Maildir in a Store.
const Inbox = "INBOX"

// SubscriptionsName is the file in the Store root listing subscribed
// folders, one name per line (the format Courier and older Dovecot write,
// which Dovecot 2.3 still reads; a Dovecot "V\t2" file is read too).
const SubscriptionsName = "subscriptions"

// SpecialFolder is a folder with an RFC 6154 special-use attribute.
type SpecialFolder struct{ Name, Attr string }

// SpecialFolders are the folders CreateSpecialFolders makes, with the
// attribute an IMAP server announces for them (SPECIAL-USE).
var SpecialFolders = []SpecialFolder{
	{"Drafts", `\Drafts`},
	{"Sent", `\Sent`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Create makes the root Maildir when missing.
	Create bool
	// Hub for the folders' Maildirs; nil means DefaultHub.
	Hub *Hub
	// Hostname for unique names of appended messages.
	Hostname string
	// UID and GID own what is created (<= 0: the process's).
	UID, GID int
}

// Store is a user's Maildir++ tree: the root Maildir is INBOX, each other
// folder is a Maildir in a directory ".NAME" of the root (with an empty
// "maildirfolder" file, as Courier and Dovecot make), hierarchy levels
// separated by '.'. Folder names are stored as given: an IMAP server
// passes them in modified UTF-7 as Dovecot stores them.
type Store struct {
	root string
	opts StoreOptions
}

// OpenStore opens (or with Create makes) the Maildir++ tree at root.
func OpenStore(root string, opts StoreOptions) (*Store, error) {
	if opts.Create {
		if err := makeMaildir(root, opts.UID, opts.GID); err != nil {
			return nil, err
		}
	}
	if st, err := os.Stat(filepath.Join(root, "cur")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mailbox: %s is not a maildir", root)
	}
	return &Store{root: CleanPath(root), opts: opts}, nil
}

// Root returns the root Maildir's directory.
func (s *Store) Root() string { return s.root }

// ValidFolderName checks a folder name (not INBOX): non-empty, valid
// UTF-8, at most 200 bytes, no '/', no control characters, no IMAP
// wildcards '*' and '%', and no empty hierarchy level (so no leading,
// trailing or doubled '.', which also rules out "." and ".." tricks).
func ValidFolderName(name string) error {
	bad := func(why string) error { return fmt.Errorf("mailbox: %w %q: %s", ErrBadName, name, why) }
	if name == "" {
		return bad("empty")
	}
	if len(name) > 200 {
		return bad("too long")
	}
	if !utf8.ValidString(name) {
		return bad("not UTF-8")
	}
	if strings.EqualFold(name, Inbox) {
		return bad("INBOX is the root maildir")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == '\\' || r == '*' || r == '%' {
			return bad(fmt.Sprintf("character %q not allowed", r))
		}
	}
	for _, part := range strings.Split(name, string(Separator)) {
		if part == "" {
			return bad("empty hierarchy level")
		}
	}
	return nil
}

// FolderPath returns the directory of folder name ("INBOX" is the root).
func (s *Store) FolderPath(name string) (string, error) {
	if strings.EqualFold(name, Inbox) {
		return s.root, nil
	}
	if err := ValidFolderName(name); err != nil {
		return "", err
	}
	p := filepath.Join(s.root, "."+name)
	if filepath.Dir(p) != s.root {
		return "", fmt.Errorf("mailbox: %w %q: leaves the store", ErrBadName, name)
	}
	return p, nil
}

// Folders lists INBOX and every folder (directories ".NAME" holding cur/),
// INBOX first, the rest sorted.
func (s *Store) Folders() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("mailbox: list folders of %s: %w", s.root, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".") || n == "." || n == ".." {
			continue
		}
		name := n[1:]
		if ValidFolderName(name) != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(s.root, n, "cur")); err != nil || !st.IsDir() {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return append([]string{Inbox}, out...), nil
}

// CreateFolder makes the folder's Maildir. Superior levels are not made:
// in Maildir++ each level is an independent directory.
func (s *Store) CreateFolder(name string) error {
	p, err := s.FolderPath(name)
	if err != nil {
		return err
	}
	if p == s.root {
		return fmt.Errorf("mailbox: create %s: %w", name, ErrExists)
	}
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("mailbox: create %s: %w", name, ErrExists)
	}
	// Build it under a temporary name and rename, so that no reader sees a
	// half-made folder.
	tmp := filepath.Join(s.root, "tmp", ".mkfolder."+fmt.Sprint(os.Getpid(), ".", tmpSeq.Add(1)))
	if err := makeMaildir(tmp, s.opts.UID, s.opts.GID); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	f, err := os.OpenFile(filepath.Join(tmp, "maildirfolder"), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err == nil {
		err = chownFile(f, s.opts.UID, s.opts.GID)
		f.Close()
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("mailbox: create %s: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.RemoveAll(tmp)
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return fmt.Errorf("mailbox: create %s: %w", name, ErrExists)
		}
		return fmt.Errorf("mailbox: create %s: %w", name, err)
	}
	return syncDir(s.root)
}

// DeleteFolder removes the folder and its messages. Its sub-folders stay
// (they are separate Maildirs). INBOX cannot be deleted.
func (s *Store) DeleteFolder(name string) error {
	p, err := s.FolderPath(name)
	if err != nil {
		return err
	}
	if p == s.root {
		return fmt.Errorf("mailbox: %w: INBOX cannot be deleted", ErrBadName)
	}
	if st, err := os.Lstat(filepath.Join(p, "cur")); err != nil || !st.IsDir() {
		return fmt.Errorf("mailbox: delete %s: %w", name, ErrNoFolder)
	}
	// Rename away first so the folder disappears at once, then remove.
	trash := filepath.Join(s.root, "tmp", ".rmfolder."+fmt.Sprint(os.Getpid(), ".", tmpSeq.Add(1)))
	if err := os.Rename(p, trash); err != nil {
		return fmt.Errorf("mailbox: delete %s: %w", name, err)
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	hubOr(s.opts.Hub).Notify(Event{Kind: EventExpunge, Mailbox: p})
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("mailbox: delete %s: %w", name, err)
	}
	return nil
}

// RenameFolder renames a folder and its sub-folders (RFC 3501 6.3.5).
// Renaming INBOX moves its messages into a new folder and leaves INBOX
// empty, as RFC 3501 asks.
func (s *Store) RenameFolder(ctx context.Context, oldName, newName string) error {
	np, err := s.FolderPath(newName)
	if err != nil {
		return err
	}
	if np == s.root {
		return fmt.Errorf("mailbox: rename to INBOX: %w", ErrExists)
	}
	if _, err := os.Lstat(np); err == nil {
		return fmt.Errorf("mailbox: rename to %s: %w", newName, ErrExists)
	}
	op, err := s.FolderPath(oldName)
	if err != nil {
		return err
	}
	if op == s.root {
		if err := s.CreateFolder(newName); err != nil {
			return err
		}
		src, err := s.OpenFolder(ctx, Inbox, false)
		if err != nil {
			return err
		}
		dst, err := s.OpenFolder(ctx, newName, false)
		if err != nil {
			return err
		}
		for _, msg := range src.Messages() {
			if _, err := src.Move(ctx, msg.UID, dst); err != nil && !errors.Is(err, ErrNoMessage) {
				return err
			}
		}
		return nil
	}
	if st, err := os.Lstat(filepath.Join(op, "cur")); err != nil || !st.IsDir() {
		return fmt.Errorf("mailbox: rename %s: %w", oldName, ErrNoFolder)
	}
	if strings.HasPrefix(newName+string(Separator), oldName+string(Separator)) {
		return fmt.Errorf("mailbox: %w: cannot rename %s into itself", ErrBadName, oldName)
	}
	folders, err := s.Folders()
	if err != nil {
		return err
	}
	type pair struct{ from, to string }
	moves := []pair{{op, np}}
	for _, f := range folders {
		if rest, ok := strings.CutPrefix(f, oldName+string(Separator)); ok {
			to, err := s.FolderPath(newName + string(Separator) + rest)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(to); err == nil {
				return fmt.Errorf("mailbox: rename to %s: %w", newName+string(Separator)+rest, ErrExists)
			}
			from, _ := s.FolderPath(f)
			moves = append(moves, pair{from, to})
		}
	}
	for _, mv := range moves {
		if err := os.Rename(mv.from, mv.to); err != nil {
			return fmt.Errorf("mailbox: rename %s: %w", filepath.Base(mv.from), err)
		}
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	// Keep subscriptions in step.
	subs, err := s.Subscriptions()
	if err != nil {
		return err
	}
	changed := false
	for i, n := range subs {
		if n == oldName {
			subs[i], changed = newName, true
		} else if rest, ok := strings.CutPrefix(n, oldName+string(Separator)); ok {
			subs[i], changed = newName+string(Separator)+rest, true
		}
	}
	if changed {
		return s.writeSubscriptions(subs)
	}
	return nil
}

// OpenFolder opens a folder's Maildir ("INBOX" is the root).
func (s *Store) OpenFolder(ctx context.Context, name string, readOnly bool) (*Maildir, error) {
	p, err := s.FolderPath(name)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(p, "cur")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mailbox: open %s: %w", name, ErrNoFolder)
	}
	return OpenMaildir(ctx, p, MaildirOpenOptions{ReadOnly: readOnly, Hub: s.opts.Hub, Hostname: s.opts.Hostname, UID: s.opts.UID, GID: s.opts.GID})
}

// CreateSpecialFolders makes and subscribes Drafts, Sent, Trash and Junk
// where missing (an IMAP server calls it at first login).
func (s *Store) CreateSpecialFolders() error {
	for _, sf := range SpecialFolders {
		if err := s.CreateFolder(sf.Name); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
		if err := s.Subscribe(sf.Name); err != nil {
			return err
		}
	}
	return nil
}

// Subscriptions returns the subscribed names in file order.
func (s *Store) Subscriptions() ([]string, error) {
	data, err := readControlFile(filepath.Join(s.root, SubscriptionsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: read subscriptions: %w", err)
	}
	return parseSubscriptions(data), nil
}

func parseSubscriptions(data []byte) []string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 1<<20)
	var out []string
	seen := map[string]bool{}
	first := true
	v2 := false
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if line == "V\t2" {
				v2 = true
				continue
			}
		}
		if v2 {
			line = strings.ReplaceAll(line, "\t", string(Separator))
		}
		if line == "" || seen[line] {
			continue
		}
		if !strings.EqualFold(line, Inbox) && ValidFolderName(line) != nil {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	return out
}

func (s *Store) writeSubscriptions(names []string) error {
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(s.root, SubscriptionsName), b.Bytes(), s.opts.UID, s.opts.GID)
}

// Subscribe adds name to the subscriptions (it need not exist, as IMAP
// allows).
func (s *Store) Subscribe(name string) error {
	if !strings.EqualFold(name, Inbox) {
		if err := ValidFolderName(name); err != nil {
			return err
		}
	}
	subs, err := s.Subscriptions()
	if err != nil {
		return err
	}
	for _, n := range subs {
		if n == name {
			return nil
		}
	}
	return s.writeSubscriptions(append(subs, name))
}

// Unsubscribe removes name from the subscriptions.
func (s *Store) Unsubscribe(name string) error {
	subs, err := s.Subscriptions()
	if err != nil {
		return err
	}
	out := subs[:0]
	for _, n := range subs {
		if n != name {
			out = append(out, n)
		}
	}
	if len(out) == len(subs) {
		return nil
	}
	return s.writeSubscriptions(out)
}
