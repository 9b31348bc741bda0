package imapserver_test

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/imapserver"
)

// An IMAP server for the users of a Dovecot passwd-file, each with a
// Maildir++ tree in HOME/Maildir.
func Example() {
	dir, _ := os.MkdirTemp("", "imap-example")
	defer os.RemoveAll(dir)
	home := filepath.Join(dir, "alice")
	os.Mkdir(home, 0o700)
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte(fmt.Sprintf("alice:{PLAIN}secret:1000:1000::%s::\n", home)), 0o600)
	db, err := auth.OpenPasswdFile(passwd, auth.PasswdFileOptions{})
	if err != nil {
		log.Fatal(err)
	}

	srv, err := imapserver.New(imapserver.Options{
		Auth:               &auth.Authenticator{PassDB: db, UserDB: db},
		AllowPlaintextAuth: true, // loopback only in this example; set TLSConfig otherwise
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		log.Fatal(err)
	}
	msg := "Subject: hello\r\n\r\nHi Alice\r\n"
	app := c.Append("INBOX", int64(len(msg)), nil)
	app.Write([]byte(msg))
	app.Close()
	if _, err := app.Wait(); err != nil {
		log.Fatal(err)
	}
	boxes, _ := c.List("", "*", nil).Collect()
	for _, b := range boxes {
		fmt.Println(b.Mailbox, b.Attrs)
	}
	sel, _ := c.Select("INBOX", nil).Wait()
	fmt.Println("messages:", sel.NumMessages)
	msgs, _ := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, RFC822Size: true}).Collect()
	fmt.Println(msgs[0].Envelope.Subject, msgs[0].RFC822Size)
	// Output:
	// INBOX [\HasNoChildren]
	// Drafts [\HasNoChildren \Drafts]
	// Junk [\HasNoChildren \Junk]
	// Sent [\HasNoChildren \Sent]
	// Trash [\HasNoChildren \Trash]
	// messages: 1
	// hello 28
}
