package pop3server

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/mailbox"
)

// FuzzParseCommand: any line parses or fails cleanly; a parsed command
// has an upper-case letter keyword and arguments without spaces.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice", "PASS pass word", "retr 1", "TOP 1 10", "LIST", "AUTH PLAIN =",
		"UIDL  2", "", "\x00", "NOOP\r", "X" + strings.Repeat("y", 40), "DELE 99999999999", "CAPA \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseCommand(line)
		if err != nil {
			return
		}
		if cmd.Name == "" || cmd.Name != strings.ToUpper(cmd.Name) || len(cmd.Name) > maxKeyword {
			t.Fatalf("%q: keyword %q", line, cmd.Name)
		}
		for _, a := range cmd.Args {
			if a == "" || strings.Contains(a, " ") {
				t.Fatalf("%q: argument %q", line, a)
			}
		}
		if n, ok := parseNumber(cmd.Rest); ok && n < 0 {
			t.Fatalf("%q: negative number", line)
		}
	})
}

// FuzzWriteMessage: for any stored message, RETR's output un-stuffed is
// the message with CRLF line ends, its length without stuffing is the
// size LIST announces, and no line of it is a lone ".".
func FuzzWriteMessage(f *testing.F) {
	for _, s := range []string{"a\nb\n", ".\n", "..x\r\n.\n", "no newline", "\r\n\r\n", "x\r", "\n\n.", "H: v\n\nbody\n.\n"} {
		f.Add(s, -1)
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, msg string, lines int) {
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, 16)
		n, err := writeMessage(w, strings.NewReader(msg), lines)
		if err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if int64(out.Len()) != n {
			t.Fatalf("wrote %d, reported %d", out.Len(), n)
		}
		got := out.String()
		if got != "" && !strings.HasSuffix(got, "\r\n") {
			t.Fatalf("%q: output does not end in CRLF: %q", msg, got)
		}
		var plain strings.Builder
		for _, l := range strings.SplitAfter(got, "\r\n") {
			if l == ".\r\n" {
				t.Fatalf("%q: a lone dot line in %q", msg, got)
			}
			if strings.HasPrefix(l, ".") {
				l = l[1:]
			}
			plain.WriteString(l)
		}
		if lines >= 0 {
			return
		}
		vs, _ := mailbox.CRLFSize(strings.NewReader(msg))
		unstuffed := plain.String()
		want := unstuffed
		if !strings.HasSuffix(msg, "\n") && msg != "" {
			want = unstuffed[:len(unstuffed)-2] // the CRLF added after the last line is not counted
		}
		if int64(len(want)) != vs {
			t.Fatalf("%q: size %d, sent %d bytes unstuffed (%q)", msg, vs, len(want), unstuffed)
		}
		if norm := crlfNormal(msg); want != norm {
			t.Fatalf("%q: sent %q, want %q", msg, want, norm)
		}
	})
}

// crlfNormal turns every LF without a CR before it into CRLF.
func crlfNormal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
