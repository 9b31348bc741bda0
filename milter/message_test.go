package milter

import (
	"bytes"
	"testing"
)

// FuzzMessage feeds arbitrary content through the header/body split,
// every modification kind and the writer: nothing may panic, and writing a
// message that was written once gives the same bytes again.
func FuzzMessage(f *testing.F) {
	f.Add([]byte("Subject: x\r\nX-A: 1\r\n\t2\r\n\r\nbody\r\n"), "X-A", "v\nw", 1)
	f.Add([]byte("no header line\r\nbody"), "Subject", "", 0)
	f.Add([]byte("A: b\nC: d\n\nbare LF body\n"), "c", "new", 2)
	f.Add([]byte(""), "", "", -1)
	f.Add([]byte("X: y"), "X", "z\r", 5)
	f.Fuzz(func(t *testing.T, data []byte, name, value string, index int) {
		m := splitMessage(data)
		for _, kind := range []ModKind{AddHeader, InsertHeader, ChangeHeader, DeleteHeader, ReplaceBody, AddRecipient} {
			m.apply(Mod{Kind: kind, Name: name, Value: value, Index: index, Body: []byte(value)})
		}
		var once bytes.Buffer
		if err := m.writeTo(&once); err != nil {
			t.Fatal(err)
		}
		var twice bytes.Buffer
		splitMessage(once.Bytes()).writeTo(&twice)
		if name != "" && isFieldName([]byte(name)) && !bytes.ContainsAny([]byte(name), ":") &&
			!bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("not stable:\n once %q\ntwice %q", once.Bytes(), twice.Bytes())
		}
	})
}

func TestSplitMessage(t *testing.T) {
	tests := []struct {
		in, out string
		headers int
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\nbody\r\n", 2},
		{"A: 1\r\n continued\r\n\r\n", "A: 1\r\n continued\r\n\r\n", 1},
		{"A: 1\r\nnot a header\r\nbody\r\n", "A: 1\r\n\r\nnot a header\r\nbody\r\n", 1},
		{"just body\r\n", "just body\r\n", 0},
		{"\r\nbody only\r\n", "\r\nbody only\r\n", 0},
		{"A: no newline", "A: no newline\r\n\r\n", 1},
	}
	for _, tc := range tests {
		m := splitMessage([]byte(tc.in))
		var b bytes.Buffer
		m.writeTo(&b)
		if b.String() != tc.out || len(m.headers) != tc.headers {
			t.Errorf("split(%q): %d headers, wrote %q; want %d, %q", tc.in, len(m.headers), b.String(), tc.headers, tc.out)
		}
	}
}
