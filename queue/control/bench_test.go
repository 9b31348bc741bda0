package control_test

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkMailq: the listing of 500 held messages read directly
// (the baseline) and through the control socket; the ratio is the
// socket's cost.
func BenchmarkMailq(b *testing.B) {
	e := start(b)
	for i := range 500 {
		e.sendHeld(fmt.Sprintf("user%d@example.org", i))
	}
	e.sync()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := e.q.Mailq(bg, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("socket", func(b *testing.B) {
		for b.Loop() {
			if err := e.c.Mailq(bg, io.Discard, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
