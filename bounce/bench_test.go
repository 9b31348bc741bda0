package bounce

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// bench100K is a 100 KB message: a header section and LF body lines.
var bench100K = func() string {
	var b strings.Builder
	b.WriteString("Received: from c.example (c.example [192.0.2.1])\n\tby mx.example.com (Postfix) with ESMTP id 3F1A2B4C5D\n")
	b.WriteString("From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: a large message\n\n")
	for i := 0; b.Len() < 100*1024; i++ {
		fmt.Fprintf(&b, "body line %6d of a message of about one hundred kilobytes\n", i)
	}
	return b.String()
}()

// BenchmarkBaselineCopy is the floor the others are measured against:
// copying the 100 KB original into a buffer, which any notice that
// returns the message must do at least once.
func BenchmarkBaselineCopy(b *testing.B) {
	r := strings.NewReader(bench100K)
	b.SetBytes(int64(len(bench100K)))
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		buf.Grow(len(bench100K) + 4096)
		r.Seek(0, io.SeekStart)
		io.Copy(&buf, r)
	}
}

func benchNotice(b *testing.B, limit int64, ret Ret) {
	s := testSettings()
	s.BounceSizeLimit = limit
	m := testMessage(failed("a@example.net"), failed("b@example.net"))
	m.Content, m.Size, m.Ret = strings.NewReader(bench100K), int64(len(bench100K)), ret
	b.SetBytes(int64(len(bench100K)))
	b.ReportAllocs()
	for b.Loop() {
		ns, err := s.Notices(Failure, m)
		if err != nil || len(ns) != 1 {
			b.Fatal(ns, err)
		}
	}
}

// BenchmarkBounceFull100K returns the whole 100 KB message
// (bounce_size_limit raised above it).
func BenchmarkBounceFull100K(b *testing.B) { benchNotice(b, 200*1024, RetFull) }

// BenchmarkBounceHeaders100K returns its headers only (Postfix's
// default bounce_size_limit of 50000 is below its size).
func BenchmarkBounceHeaders100K(b *testing.B) { benchNotice(b, 50000, RetFull) }
