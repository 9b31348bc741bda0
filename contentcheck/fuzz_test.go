package contentcheck

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/postkit-mail/postkit/internal/corpus"
)

// FuzzWalker feeds arbitrary messages, in arbitrary chunks, to a Walker
// with small limits and tables that use the line actions. It must not
// panic, its buffers must stay within the limits, and without tables it
// must give the message back unchanged (but for Postfix's own blank line
// after headers that lack one). Seeds: testdata/fuzz/FuzzWalker and, when
// installed, the enmime and CPython corpora.
func FuzzWalker(f *testing.F) {
	for _, set := range [][]string{corpus.BrokenMIME(f), corpus.CPythonEmail(f)} {
		for _, p := range set {
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(b, uint8(7))
			}
		}
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\n--a--\r\n"), uint8(1))
	hdr := inlineRegexp(f, "/^Subject:/ REPLACE Subject: r", "/^X-/ IGNORE", "/^Content-Type:/ PREPEND X-P: 1", "/^From:/ WARN w")
	body := inlineRegexp(f, "/^--/ PREPEND before", "/a/ REPLACE b", "/^$/ IGNORE", "/z/ STRIP")
	small := Config{HeaderChecks: hdr, MIMEHeaderChecks: hdr, NestedHeaderChecks: hdr, BodyChecks: body,
		HeaderSizeLimit: 200, LineLengthLimit: 64, BodyChecksSizeLimit: 300, MIMENestingLimit: 5, MIMEBoundaryLengthLimit: 20,
		Strict8bitMIME: true, StrictMIMEEncodingDomain: true}
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		n := int(chunk)%61 + 1
		w := small.NewWalker(context.Background(), io.Discard, Hooks{}, LogInfo{})
		for p := msg; len(p) > 0; {
			k := min(n, len(p))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
			if len(w.partial) > 64 || len(w.hdrKey) > 200+1+64 || len(w.stack) > 5+2 {
				t.Fatalf("buffers beyond the limits: partial %d, header %d, stack %d", len(w.partial), len(w.hdrKey), len(w.stack))
			}
			for _, b := range w.stack {
				if len(b.text) > 20 {
					t.Fatalf("boundary of %d bytes", len(b.text))
				}
			}
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(msg, '\r') >= 0 {
			return
		}
		var out bytes.Buffer
		w = (&Config{HeaderSizeLimit: 1 << 30}).NewWalker(context.Background(), &out, Hooks{}, LogInfo{})
		for p := msg; len(p) > 0; {
			k := min(n, len(p))
			w.Write(p[:k])
			p = p[k:]
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), msg) && !blankInserted(msg, out.Bytes()) {
			t.Fatalf("message changed without tables:\n%q\n%q", msg, out.Bytes())
		}
	})
}

// TestFuzzSeeds keeps the checked-in seeds readable.
func TestFuzzSeeds(t *testing.T) {
	m, _ := filepath.Glob("testdata/fuzz/FuzzWalker/*")
	if len(m) == 0 {
		t.Fatal("no seeds in testdata/fuzz/FuzzWalker")
	}
}
