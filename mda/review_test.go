package mda

import (
	"errors"
	"testing"
)

// endless is a header line that never ends; it counts what is read.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	if e.n > 64<<20 {
		return 0, errors.New("read the whole (endless) message")
	}
	for i := range p {
		p[i] = 'x'
	}
	e.n += len(p)
	return len(p), nil
}

// The Delivered-To scan reads a bounded part of the header section even
// when a line never ends, so a huge message cannot make every delivery
// read all of it.
func TestDeliveredToScanBounded(t *testing.T) {
	for _, prefix := range []string{"", "Subject: x\r\nX-Long: "} {
		r := &endless{}
		found, err := HasDeliveredTo(multi(prefix, r), "a@b")
		if err != nil || found {
			t.Errorf("prefix %q: found=%v err=%v", prefix, found, err)
		}
		if r.n > maxHeaderScan+64<<10 {
			t.Errorf("prefix %q: read %d bytes, bound is %d", prefix, r.n, maxHeaderScan)
		}
	}
}

func multi(prefix string, r *endless) *prefixed { return &prefixed{s: prefix, r: r} }

type prefixed struct {
	s string
	r *endless
}

func (p *prefixed) Read(b []byte) (int, error) {
	if p.s != "" {
		n := copy(b, p.s)
		p.s = p.s[n:]
		return n, nil
	}
	return p.r.Read(b)
}
