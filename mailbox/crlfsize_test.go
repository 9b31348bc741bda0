package mailbox

import (
	"strings"
	"testing"
	"testing/iotest"
)

// TestCRLFSize: the size is that of the text with every bare LF made CRLF,
// also when a CR and its LF arrive in different reads.
func TestCRLFSize(t *testing.T) {
	for _, msg := range []string{"", "a", "a\n", "a\r\n", "\n\n", "a\r\nb\nc", "\r", "x\r\r\n\n", "From: a\n\nbody\n"} {
		want := int64(len(strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")))
		got, err := CRLFSize(strings.NewReader(msg))
		if err != nil || got != want {
			t.Errorf("CRLFSize(%q) = %d, %v; want %d", msg, got, err, want)
		}
		got, err = CRLFSize(iotest.OneByteReader(strings.NewReader(msg)))
		if err != nil || got != want {
			t.Errorf("CRLFSize(%q) one byte at a time = %d, %v; want %d", msg, got, err, want)
		}
	}
}

func TestKeyVSize(t *testing.T) {
	for key, want := range map[string]int64{
		"1700000000.M1P2.host,S=120,W=123": 123,
		"1700000000.M1P2.host,W=0":         0,
		"1700000000.M1P2.host,S=120":       -1,
		"1700000000.M1P2.host":             -1,
		"1700000000.M1P2.host,W=":          -1,
		"1700000000.M1P2.host,W=-4":        -1,
		"1700000000.W=5.host":              -1,
	} {
		n, ok := KeyVSize(key)
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("KeyVSize(%q) = %d, %v; want %d", key, n, ok, want)
		}
	}
}
