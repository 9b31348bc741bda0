package mailbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreFolders(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "Maildir")
	s, err := OpenStore(root, StoreOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSpecialFolders(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Archive", "Archive.2024", "Archive.2024.Q1", "Lists"} {
		if err := s.CreateFolder(n); err != nil {
			t.Fatal(n, err)
		}
	}
	if err := s.CreateFolder("Archive"); !errors.Is(err, ErrExists) {
		t.Errorf("second create: %v, want ErrExists", err)
	}
	got, _ := s.Folders()
	want := "[INBOX Archive Archive.2024 Archive.2024.Q1 Drafts Junk Lists Sent Trash]"
	if fmt.Sprint(got) != want {
		t.Errorf("Folders %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, ".Archive.2024", "maildirfolder")); err != nil {
		t.Errorf("no maildirfolder marker: %v", err)
	}
	subs, _ := s.Subscriptions()
	if fmt.Sprint(subs) != "[Drafts Sent Trash Junk]" {
		t.Errorf("subscriptions %v", subs)
	}
	s.Subscribe("Archive.2024")
	s.Subscribe("Archive.2024")
	s.Unsubscribe("Junk")
	subs, _ = s.Subscriptions()
	if fmt.Sprint(subs) != "[Drafts Sent Trash Archive.2024]" {
		t.Errorf("subscriptions %v", subs)
	}
	// Messages go with a renamed folder, children follow, subscriptions too.
	arch, err := s.OpenFolder(ctx, "Archive.2024", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := arch.Append(ctx, strings.NewReader("Subject: kept\n\n"), FlagSeen, testTime); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameFolder(ctx, "Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Folders()
	if fmt.Sprint(got) != "[INBOX Drafts Junk Lists Old Old.2024 Old.2024.Q1 Sent Trash]" {
		t.Errorf("after rename %v", got)
	}
	subs, _ = s.Subscriptions()
	if fmt.Sprint(subs) != "[Drafts Sent Trash Old.2024]" {
		t.Errorf("subscriptions after rename %v", subs)
	}
	old, err := s.OpenFolder(ctx, "Old.2024", false)
	if err != nil || len(old.Messages()) != 1 || old.Messages()[0].Flags != FlagSeen {
		t.Fatalf("renamed folder: %v", err)
	}
	if err := s.RenameFolder(ctx, "Old", "Old.x"); !errors.Is(err, ErrBadName) {
		t.Errorf("rename into itself: %v", err)
	}
	if err := s.RenameFolder(ctx, "Lists", "Sent"); !errors.Is(err, ErrExists) {
		t.Errorf("rename onto an existing folder: %v", err)
	}
	if err := s.DeleteFolder("Old"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFolder("Old"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("second delete: %v", err)
	}
	if err := s.DeleteFolder("INBOX"); err == nil {
		t.Error("INBOX deleted")
	}
	got, _ = s.Folders()
	if fmt.Sprint(got) != "[INBOX Drafts Junk Lists Old.2024 Old.2024.Q1 Sent Trash]" {
		t.Errorf("after delete %v", got)
	}
	// Renaming INBOX moves its messages and leaves it empty.
	deliverN(t, root, "in", 2)
	if err := s.RenameFolder(ctx, "INBOX", "Saved"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := s.OpenFolder(ctx, "INBOX", false)
	saved, _ := s.OpenFolder(ctx, "Saved", false)
	if len(inbox.Messages()) != 0 || len(saved.Messages()) != 2 {
		t.Errorf("INBOX rename: inbox %d, saved %d messages", len(inbox.Messages()), len(saved.Messages()))
	}
}

func TestFolderNameEscapes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "Maildir")
	s, err := OpenStore(root, StoreOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"", ".", "..", "...", ".hidden", "a..b", "a.", "../x", "a/b", "/etc", "x/../../y",
		"inbox", "INBOX", "a\x00b", "a\nb", "tab\there", "a*", "b%", `back\slash`, strings.Repeat("x", 201), "bad\xffutf8"} {
		if err := s.CreateFolder(n); !errors.Is(err, ErrBadName) && !(strings.EqualFold(n, "inbox") && errors.Is(err, ErrExists)) {
			t.Errorf("CreateFolder(%q) = %v, want ErrBadName", n, err)
		}
		if _, err := s.OpenFolder(context.Background(), n, false); err == nil && !strings.EqualFold(n, "inbox") {
			t.Errorf("OpenFolder(%q) succeeded", n)
		}
	}
	ents, _ := os.ReadDir(root)
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), UIDListName) {
			names = append(names, e.Name())
		}
	}
	if fmt.Sprint(names) != "[cur new tmp]" {
		t.Errorf("store root holds %v after bad names", names)
	}
	if entries, _ := os.ReadDir(filepath.Dir(root)); len(entries) != 1 {
		t.Errorf("something was created beside the store: %v", entries)
	}
	for _, n := range []string{"Sent", "a.b.c", "Ünïcode", "&AOQ-mUTF7", "with space", "x-y_z"} {
		if err := s.CreateFolder(n); err != nil {
			t.Errorf("CreateFolder(%q): %v", n, err)
		}
	}
}
