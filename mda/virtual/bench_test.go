package virtual_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/queue"
)

var benchContent = "From: a@x.test\r\nTo: b@v.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("a line of text that is exactly sixty-four bytes long ..........\r\n", 64)

// BenchmarkMaildir delivers one 4 KB message per iteration to a Maildir
// through the agent (table lookups, headers, CRLF to LF, mailbox's
// tmp/ write, fsync, link to new/). Compare with BenchmarkWriteFsync,
// a bare create+write+fsync+rename of the same bytes in the same run.
func BenchmarkMaildir(b *testing.B) {
	a, _ := setup(b, "")
	d := request("s@x.test", benchContent, rcpt("bob@v.test", "bob@v.test"))
	b.SetBytes(int64(len(benchContent)))
	b.ResetTimer()
	for b.Loop() {
		if r := a.Deliver(context.Background(), d)[0]; r.Outcome != queue.Delivered {
			b.Fatalf("%+v", r)
		}
	}
}

// BenchmarkWriteFsync is the baseline: the least a durable Maildir
// delivery must do (write a file, fsync it, rename it, fsync the
// directory).
func BenchmarkWriteFsync(b *testing.B) {
	dir := b.TempDir()
	data := []byte(strings.ReplaceAll(benchContent, "\r\n", "\n"))
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		tmp := filepath.Join(dir, "tmp")
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(f, strings.NewReader(string(data))); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if err := os.Rename(tmp, filepath.Join(dir, "m"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		df, _ := os.Open(dir)
		df.Sync()
		df.Close()
	}
}
