package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <a@example.com>\nSubject: bench\n\n")
	for i := 0; b.Len() < size; i++ {
		if i%20 == 0 {
			b.WriteString("From a line that needs quoting\n")
		}
		b.WriteString(strings.Repeat("abcdefghij", 7) + "\n")
	}
	return b.Bytes()[:size]
}

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1024}, {"50KiB", 50 * 1024}}

// The baselines are the least a durable store must do: write a file and
// fsync it and its directory (Maildir), or append and fsync (mbox). The
// report gives DeliverMaildir and DeliverMbox as ratios to them.
func BenchmarkBaselineFileFsync(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			dir := b.TempDir()
			msg := benchMessage(s.n)
			b.SetBytes(int64(s.n))
			for i := 0; b.Loop(); i++ {
				f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				f.Write(msg)
				f.Sync()
				f.Close()
				if err := syncDir(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDeliverMaildir(b *testing.B) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "Maildir")
			msg := benchMessage(s.n)
			b.SetBytes(int64(s.n))
			for b.Loop() {
				if _, err := DeliverMaildir(ctx, dir, bytes.NewReader(msg), MaildirOptions{Create: true, Hostname: "bench", Hub: hub}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBaselineAppendFsync(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "mbox"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			msg := benchMessage(s.n)
			b.SetBytes(int64(s.n))
			for b.Loop() {
				f.Write(msg)
				f.Sync()
			}
		})
	}
}

func BenchmarkDeliverMbox(b *testing.B) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "mbox")
			msg := benchMessage(s.n)
			b.SetBytes(int64(s.n))
			for b.Loop() {
				if err := DeliverMbox(ctx, path, "a@example.com", bytes.NewReader(msg), MboxOptions{Create: true, Hub: hub}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMaildirSync measures a Sync with nothing new in a 2,000-message
// Maildir (what an IMAP session pays per NOOP/IDLE wake-up).
func BenchmarkMaildirSync(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "Maildir")
	hub := NewHub(HubOptions{Watch: WatchNone})
	msg := benchMessage(512)
	for i := 0; i < 2000; i++ {
		if _, err := DeliverMaildir(ctx, dir, bytes.NewReader(msg), MaildirOptions{Create: true, Hub: hub}); err != nil {
			b.Fatal(err)
		}
	}
	md, err := OpenMaildir(ctx, dir, MaildirOpenOptions{Hub: hub})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := md.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPaired alternates the baseline and the delivery in every
// iteration, so that both see the same machine load, and reports
// delivery time / baseline time as "x-baseline" (the figure to quote on a
// noisy machine).
func BenchmarkPaired(b *testing.B) {
	ctx := context.Background()
	hub := NewHub(HubOptions{Watch: WatchNone})
	for _, s := range benchSizes {
		msg := benchMessage(s.n)
		b.Run("Maildir/"+s.name, func(b *testing.B) {
			base := b.TempDir()
			dir := filepath.Join(b.TempDir(), "Maildir")
			var tb, td time.Duration
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				f, err := os.OpenFile(filepath.Join(base, fmt.Sprint(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				f.Write(msg)
				f.Sync()
				f.Close()
				syncDir(base)
				t1 := time.Now()
				if _, err := DeliverMaildir(ctx, dir, bytes.NewReader(msg), MaildirOptions{Create: true, Hub: hub}); err != nil {
					b.Fatal(err)
				}
				tb += t1.Sub(t0)
				td += time.Since(t1)
			}
			b.ReportMetric(float64(td)/float64(tb), "x-baseline")
		})
		b.Run("Mbox/"+s.name, func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			path := filepath.Join(b.TempDir(), "mbox")
			var tb, td time.Duration
			for b.Loop() {
				t0 := time.Now()
				f.Write(msg)
				f.Sync()
				t1 := time.Now()
				if err := DeliverMbox(ctx, path, "a@example.com", bytes.NewReader(msg), MboxOptions{Create: true, Hub: hub}); err != nil {
					b.Fatal(err)
				}
				tb += t1.Sub(t0)
				td += time.Since(t1)
			}
			b.ReportMetric(float64(td)/float64(tb), "x-baseline")
		})
	}
}
