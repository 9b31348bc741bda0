package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/queue"
)

// benchMessage is a 4 KiB message.
var benchMessage = "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: bench\r\nMessage-Id: <b@example.org>\r\n\r\n" +
	strings.Repeat("This is a line of a benchmark message body, 64 bytes long...\r\n", 64)

// BenchmarkDeliver measures one local delivery per iteration to a
// Maildir and to an mbox, and a baseline in the same run: writing the same
// bytes to a new file with fsync, the least a durable delivery costs.
// Report the deliveries as ratios to the baseline.
func BenchmarkDeliver(b *testing.B) {
	b.Run("baseline-write-fsync", func(b *testing.B) {
		dir := b.TempDir()
		data := []byte(strings.ReplaceAll(benchMessage, "\r\n", "\n"))
		b.SetBytes(int64(len(data)))
		for i := 0; b.Loop(); i++ {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	for _, c := range []struct{ name, main string }{
		{"maildir", "home_mailbox = Maildir/\n"},
		{"mbox", "mailbox_size_limit = 0\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newBenchHarness(b, c.main)
			d := delivery(benchMessage, "alice@example.org", "bob@example.net")
			b.SetBytes(int64(len(benchMessage)))
			for b.Loop() {
				r := h.agent.Deliver(context.Background(), d)[0]
				if r.Outcome != queue.Delivered {
					b.Fatalf("%+v", r)
				}
			}
		})
	}
}
