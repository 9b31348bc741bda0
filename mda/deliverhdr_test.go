package mda

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDeliveryHeaders(t *testing.T) {
	tests := []struct {
		rp, orig, dt string
		want         string
	}{
		{"alice@example.com", "info@example.net", "Bob@Example.NET",
			"Return-Path: <alice@example.com>\nX-Original-To: info@example.net\nDelivered-To: Bob@Example.NET\n"},
		{"", "bob@example.net", "bob@example.net",
			"Return-Path: <>\nX-Original-To: bob@example.net\nDelivered-To: bob@example.net\n"},
		{"a b@example.com", "", "",
			"Return-Path: <\"a b\"@example.com>\n"},
		{"s@x", "", "Joe Q@X",
			"Return-Path: <s@x>\nDelivered-To: \"Joe Q\"@X\n"},
		{"s@x", "o@x", "",
			"Return-Path: <s@x>\nX-Original-To: o@x\n"},
	}
	for _, tt := range tests {
		if got := string(DeliveryHeaders(tt.rp, tt.orig, tt.dt)); got != tt.want {
			t.Errorf("DeliveryHeaders(%q, %q, %q) = %q, want %q", tt.rp, tt.orig, tt.dt, got, tt.want)
		}
	}
}

func TestHasDeliveredTo(t *testing.T) {
	tests := []struct {
		name, content, addr string
		want                bool
	}{
		{"crlf match", "Received: x\r\nDelivered-To: bob@example.net\r\nSubject: s\r\n\r\nbody\r\n", "bob@example.net", true},
		{"case and space", "delivered-to  :   BOB@Example.NET  \n\nb\n", "bob@example.net", true},
		{"other addr", "Delivered-To: alice@example.net\r\n\r\n", "bob@example.net", false},
		{"in body only", "Subject: s\r\n\r\nDelivered-To: bob@example.net\r\n", "bob@example.net", false},
		{"after non-header line", "Subject: s\r\nnot a header\r\nDelivered-To: bob@example.net\r\n\r\n", "bob@example.net", false},
		{"continuation not compared", "X-Foo: a\r\n Delivered-To: bob@example.net\r\n\r\n", "bob@example.net", false},
		{"quoted form", "Delivered-To: \"a b\"@example.net\r\n\r\n", "a b@example.net", true},
		{"no final newline", "Delivered-To: bob@example.net", "bob@example.net", true},
		{"second of several", "Delivered-To: a@x\r\nDelivered-To: bob@x\r\n\r\n", "BOB@X", true},
		{"prefix only", "Delivered-To: bob@example.net.evil\r\n\r\n", "bob@example.net", false},
		{"empty", "", "bob@x", false},
		{"long header then match", "X-Long: " + strings.Repeat("a", 10000) + "\r\nDelivered-To: bob@x\r\n\r\n", "bob@x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HasDeliveredTo(strings.NewReader(tt.content), tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			// The same answer when the reader hands out one byte at a time.
			got, err = HasDeliveredTo(iotest.OneByteReader(strings.NewReader(tt.content)), tt.addr)
			if err != nil || got != tt.want {
				t.Errorf("one byte reader: got %v, %v", got, err)
			}
		})
	}
}

func TestHasDeliveredToReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("Subject: x\r\n"), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := HasDeliveredTo(r, "a@b"); err == nil {
		t.Fatal("read error not reported")
	}
}

// TestHasDeliveredToStopsAtBody checks the body is not read: a reader that
// fails after the header section must not be touched.
func TestHasDeliveredToStopsAtBody(t *testing.T) {
	r := io.MultiReader(strings.NewReader("Subject: x\r\n\r\n"), iotest.ErrReader(io.ErrUnexpectedEOF))
	ok, err := HasDeliveredTo(iotest.OneByteReader(r), "a@b")
	if ok || err != nil {
		t.Fatalf("got %v, %v", ok, err)
	}
}

func lfReference(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

func TestLFReader(t *testing.T) {
	inputs := []string{
		"",
		"a\r\nb\r\n",
		"no newline",
		"lone\rcr\r\n",
		"ends in cr\r",
		"\r\r\n\r\n\r",
		"\n\n\r\n",
		strings.Repeat("x\r\n", 20000) + "tail\r",
	}
	for _, in := range inputs {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"plain":   func(r io.Reader) io.Reader { return r },
			"onebyte": iotest.OneByteReader,
			"half":    iotest.HalfReader,
			"dataerr": iotest.DataErrReader,
		} {
			got, err := io.ReadAll(NewLFReader(wrap(strings.NewReader(in))))
			if err != nil {
				t.Fatal(err)
			}
			if want := lfReference(in); string(got) != want {
				t.Errorf("%s %q: got %q, want %q", name, trunc(in), trunc(string(got)), trunc(want))
			}
		}
	}
	if err := iotest.TestReader(NewLFReader(strings.NewReader("a\r\nb\rc\r\n")), []byte("a\nb\rc\n")); err != nil {
		t.Error(err)
	}
}

func TestLFReaderError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("a\r"), iotest.ErrReader(io.ErrClosedPipe))
	got, err := io.ReadAll(NewLFReader(r))
	if err != io.ErrClosedPipe {
		t.Fatalf("err = %v", err)
	}
	if string(got) != "a\r" {
		t.Fatalf("got %q", got)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func FuzzLFReader(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), uint8(1))
	f.Add([]byte("\r\r\n\r"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		n := int(chunk)%7 + 1
		r := &chunkReader{b: in, n: n}
		got, err := io.ReadAll(NewLFReader(r))
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n")); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func FuzzHasDeliveredTo(f *testing.F) {
	f.Add([]byte("Delivered-To: bob@x\r\n\r\n"), "bob@x")
	f.Add([]byte("A: b\r\n c\r\nDelivered-To:\r\n\r\n"), "")
	f.Fuzz(func(t *testing.T, content []byte, addr string) {
		a, err1 := HasDeliveredTo(bytes.NewReader(content), addr)
		b, err2 := HasDeliveredTo(&chunkReader{b: content, n: 3}, addr)
		if a != b || (err1 == nil) != (err2 == nil) {
			t.Fatalf("chunking changed the answer: %v %v / %v %v", a, err1, b, err2)
		}
	})
}

type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func TestDeliveredTo(t *testing.T) {
	got, err := DeliveredTo(strings.NewReader("Delivered-To: A@x\r\nSubject: s\r\nDelivered-To:  b@Y \r\n\r\nDelivered-To: c@z\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a@x,b@y" {
		t.Fatalf("got %q", got)
	}
}
