package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzSendmailReader: sendmail's input reader never panics, always writes
// CRLF-terminated lines, never lets a lone "." line through when it ends
// the input, and leaves LF-only input without From_ lines unchanged but
// for the line endings.
func FuzzSendmailReader(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody\n.\nafter\n"), true, uint8(0))
	f.Add([]byte("From x\r\n>From y\r\nSubject: x\r\n\r\n.\r\n"), true, uint8(1))
	f.Add([]byte("a\rb\r\r\n.\r\n"), false, uint8(2))
	f.Add([]byte("no newline"), true, uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, dotEnds bool, mode uint8) {
		fix := []string{"always", "strict", "never"}[int(mode)%3]
		r := &smReader{in: bufio.NewReaderSize(bytes.NewReader(in), 64<<10), dotEnds: dotEnds, fixEOL: fix, keepHdr: true}
		var out bytes.Buffer
		if err := r.copy(&out); err != nil {
			t.Fatal(err)
		}
		o := out.String()
		if o != "" && !strings.HasSuffix(o, "\r\n") {
			t.Fatalf("output does not end in CRLF: %q", o)
		}
		lines := strings.Split(strings.TrimSuffix(o, "\r\n"), "\r\n")
		if dotEnds {
			for _, l := range lines {
				if l == "." && o != "" {
					t.Fatalf("a lone dot got through: %q -> %q", in, o)
				}
			}
		}
		smHeaderRecipients(r.headers.Bytes())
		s := string(in)
		if dotEnds || strings.Contains(s, "\r") || len(s) == 0 {
			return
		}
		first := strings.TrimLeft(s, ">")
		if strings.HasPrefix(first, "From ") {
			return
		}
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		if want := strings.ReplaceAll(s, "\n", "\r\n"); o != want {
			t.Fatalf("%q -> %q, want %q", in, o, want)
		}
	})
}
