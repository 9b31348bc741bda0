package mailbox

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkMakeMaildirExisting is what MaildirOptions.Create costs a
// delivery into an existing Maildir (four mkdirs failing with EEXIST), to
// be set against BenchmarkDeliverMaildirCreate (a whole delivery with
// Create) in the same run.
func BenchmarkMakeMaildirExisting(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "Maildir")
	if err := makeMaildir(dir, 0, 0); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := makeMaildir(dir, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliverMaildirCreate(b *testing.B) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	dir := filepath.Join(b.TempDir(), "Maildir")
	msg := benchMessage(1024)
	for b.Loop() {
		if _, err := DeliverMaildir(ctx, dir, bytes.NewReader(msg), MaildirOptions{Create: true, Hostname: "bench", Hub: hub}); err != nil {
			b.Fatal(err)
		}
	}
}
