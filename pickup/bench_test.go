package pickup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var benchContent = strings.Repeat("Subject: a benchmark line of a typical message body\r\n", 200)

// BenchmarkSubmit is a durable submission; BenchmarkBaselineWrite is the
// floor it is compared with: the same bytes written to a temporary file,
// fsynced, renamed and the directory fsynced, with no format at all.
func BenchmarkSubmit(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "maildrop")
	if err := Create(dir, 0); err != nil {
		b.Fatal(err)
	}
	env := sampleEnvelope()
	b.SetBytes(int64(len(benchContent)))
	for b.Loop() {
		name, err := Submit(context.Background(), dir, env, strings.NewReader(benchContent))
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(filepath.Join(dir, name))
	}
}

func BenchmarkBaselineWrite(b *testing.B) {
	dir := b.TempDir()
	b.SetBytes(int64(len(benchContent)))
	for b.Loop() {
		tmp := filepath.Join(dir, ".tmp")
		f, err := os.Create(tmp)
		if err != nil {
			b.Fatal(err)
		}
		f.WriteString(benchContent)
		f.Sync()
		f.Close()
		final := filepath.Join(dir, "x")
		os.Rename(tmp, final)
		syncDir(dir)
		os.Remove(final)
	}
}

// BenchmarkDecode checks and parses a file (the checksum pass included).
func BenchmarkDecode(b *testing.B) {
	data := encode(b, &Envelope{Arrival: time.Now(), Proto: "local", Local: true,
		Recipients: []Recipient{{Addr: "a@example.com"}, {Addr: "b@example.com"}}}, benchContent)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Decode(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}
