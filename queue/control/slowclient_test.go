package control_test

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/queue"
	"github.com/postkit-mail/postkit/queue/control"
)

// A client that asks for a large message and stops reading is dropped
// after WriteTimeout instead of holding the server's goroutine and the
// open queue file until the server closes.
func TestStalledReaderDropped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q, err := queue.Open(dir, queue.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	f, err := q.Create(bg, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	content := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 100000)
	if _, err := io.WriteString(f, content); err != nil {
		t.Fatal(err)
	}
	env := &cleanup.Envelope{Arrival: time.Now(), Sender: "a@example.com", Size: int64(len(content)),
		Recipients: []cleanup.Recipient{{Addr: "b@example.com"}}}
	if err := f.Commit(bg, env); err != nil {
		t.Fatal(err)
	}
	srv := control.NewServer(q, nil)
	srv.Logger = quiet
	srv.WriteTimeout = 200 * time.Millisecond
	if err := srv.Listen(""); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.Dial("unix", control.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "postcat "+f.ID()+" b\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // stalled well past WriteTimeout
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply: %v (after %d bytes)", err, len(got))
	}
	if len(got) >= len(content) || strings.HasSuffix(string(got), "ok 0\n") {
		t.Errorf("the stalled client got the whole reply (%d bytes, content %d): it was not dropped", len(got), len(content))
	}
}
