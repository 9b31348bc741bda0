package imapserver

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// FuzzMailboxName feeds client mailbox names (UTF-8, as go-imap hands
// them over) to CREATE, RENAME, SUBSCRIBE, STATUS and DELETE of a real
// Maildir++ store: no panic, nothing created outside the store, and the
// modified UTF-7 conversion round-trips.
func FuzzMailboxName(f *testing.F) {
	seeds, _ := os.ReadFile("testdata/mailbox-names.txt")
	for _, s := range strings.Split(string(seeds), "\n") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if utf8.ValidString(name) {
			if got, err := decodeUTF7(encodeUTF7(name)); err != nil || got != name {
				t.Fatalf("UTF-7 round trip of %q: %q, %v", name, got, err)
			}
		}
		decodeUTF7(name) // must not panic
		dir := t.TempDir()
		root := filepath.Join(dir, "Maildir")
		st, err := mailbox.OpenStore(root, mailbox.StoreOptions{Create: true, Hub: mailbox.NewHub(mailbox.HubOptions{Watch: mailbox.WatchNone})})
		if err != nil {
			t.Fatal(err)
		}
		srv, _ := New(Options{Auth: &auth.Authenticator{PassDB: auth.PassDBFunc(nil)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		se := &session{s: srv, store: st, ctx: context.Background(), user: "fuzz"}
		se.Create(name, nil)
		se.Subscribe(name)
		se.Status(name, &imap.StatusOptions{NumMessages: true})
		se.Rename(name, name+".x", nil)
		se.Delete(name + ".x")
		se.Delete(name)
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != dir && p != root && !strings.HasPrefix(p, root+string(filepath.Separator)) {
				t.Fatalf("%q made %s outside the store", name, p)
			}
			return nil
		})
	})
}
