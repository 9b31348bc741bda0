package mailbox_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/postkit-mail/postkit/mailbox"
)

// A delivery agent stores a message; an IMAP session sees it with a UID,
// reads it and marks it seen.
func Example() {
	ctx := context.Background()
	root, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(root)
	dir := filepath.Join(root, "Maildir")
	hub := mailbox.NewHub(mailbox.HubOptions{})
	defer hub.Close()

	// The reader side: open INBOX and subscribe to its changes.
	store, err := mailbox.OpenStore(dir, mailbox.StoreOptions{Create: true, Hub: hub})
	if err != nil {
		log.Fatal(err)
	}
	inbox, err := store.OpenFolder(ctx, mailbox.Inbox, false)
	if err != nil {
		log.Fatal(err)
	}
	sub := hub.Subscribe(inbox.Path())
	defer sub.Close()

	// The delivery side (what mda/local does for home_mailbox = Maildir/).
	msg := "Return-Path: <alice@example.com>\nSubject: hello\n\nHi Bob.\n"
	if _, err := mailbox.DeliverMaildir(ctx, dir, strings.NewReader(msg), mailbox.MaildirOptions{Hub: hub}); err != nil {
		log.Fatal(err)
	}

	ev := <-sub.C
	changes, err := inbox.Sync(ctx)
	if err != nil {
		log.Fatal(err)
	}
	m := changes.New[0]
	fmt.Println(ev.Kind, "UID", m.UID, "size", m.Size, "recent", m.Recent)

	f, _, err := inbox.Open(ctx, m.UID)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(f)
	f.Close()
	fmt.Printf("%q\n", strings.SplitN(string(body), "\n", 3)[1])

	m, err = inbox.SetFlags(ctx, m.UID, m.Flags|mailbox.FlagSeen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("flags", m.Flags, strings.HasSuffix(m.Name, ":2,S"))
	// Output:
	// new UID 1 size 57 recent true
	// "Subject: hello"
	// flags S true
}

// DeliverMbox appends with the From_ line, >From quoting and locking.
func ExampleDeliverMbox() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bob")
	err := mailbox.DeliverMbox(context.Background(), path, "", strings.NewReader("Subject: x\n\nFrom here on\n"),
		mailbox.MboxOptions{Create: true, Locks: []string{"fcntl", "dotlock"}})
	if err != nil {
		log.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	fmt.Printf("%q\n", strings.SplitN(string(data), "\n", 2)[1])
	// Output:
	// "Subject: x\n\n>From here on\n\n"
}
