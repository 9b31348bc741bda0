package pickup_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/pickup"
)

// A program submits a message the way "postkit sendmail" does: one durable
// file in the maildrop, then a wake-up for the service. Decode is what the
// service reads back.
func ExampleSubmit() {
	base, _ := os.MkdirTemp("", "maildrop")
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "maildrop")
	if err := pickup.Create(dir, 0); err != nil {
		fmt.Println(err)
		return
	}
	env := &pickup.Envelope{
		Arrival:    time.Now(),
		Sender:     "alice",
		Local:      true,
		Proto:      "local",
		Recipients: []pickup.Recipient{{Addr: "bob@example.com"}},
	}
	name, err := pickup.Submit(context.Background(), dir, env, strings.NewReader("Subject: hello\r\n\r\nHi Bob\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	pickup.Wake(dir) // a running pickup.Service scans at once

	f, _ := os.Open(filepath.Join(dir, name))
	defer f.Close()
	fi, _ := f.Stat()
	got, content, err := pickup.Decode(f, fi.Size())
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(content)
	fmt.Printf("from=<%s> to=<%s>\n%q\n", got.Sender, got.Recipients[0].Addr, body)
	// Output:
	// from=<alice> to=<bob@example.com>
	// "Subject: hello\r\n\r\nHi Bob\r\n"
}
