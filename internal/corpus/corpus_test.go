package corpus

import (
	"bytes"
	"testing"
)

func TestCorporaPresent(t *testing.T) {
	sa := SpamAssassin(t)
	if len(sa) < 6000 {
		t.Fatalf("SpamAssassin corpus has %d messages, want about 6,046", len(sa))
	}
	m := Message(t, sa[0])
	if bytes.HasPrefix(m, []byte("From ")) || !bytes.Contains(m, []byte("\r\n\r\n")) {
		t.Fatalf("%s: not a CRLF message without the mbox From line: %.80q", sa[0], m)
	}
	if n := len(BrokenMIME(t)); n < 10 {
		t.Fatalf("enmime corpus has %d messages", n)
	}
	if n := len(CPythonEmail(t)); n < 40 {
		t.Fatalf("CPython email corpus has %d messages", n)
	}
}
