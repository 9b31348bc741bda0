package milter_test

import (
	"context"
	"io"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

var benchMsg = testMsg + strings.Repeat("A line of body text that goes on for a while, as mail does.\r\n", 64)

// BenchmarkRun is one message through one milter that adds a header, with
// Apply; BenchmarkRunBaseline is the same conversation with go-milter's
// client alone, the floor for what postkit adds around it.
func BenchmarkRun(b *testing.B) {
	addr := startMilter(b, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.AddHeader("X-Bench", "1")
			return gomilter.RespAccept, nil
		}}
	})
	c := testConfig(addr)
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		res, err := c.Run(context.Background(), testEnv, strings.NewReader(benchMsg))
		if err != nil || len(res.Mods) != 1 {
			b.Fatal(err)
		}
		if err := res.Apply(strings.NewReader(benchMsg), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunBaseline(b *testing.B) {
	addr := startMilter(b, func() *script {
		return &script{seen: &seen{}, eom: func(m gomilter.Modifier) (*gomilter.Response, error) {
			m.AddHeader("X-Bench", "1")
			return gomilter.RespAccept, nil
		}}
	})
	cl := gomilter.NewClient("tcp", strings.TrimPrefix(addr, "inet:"))
	hdr, body, _ := strings.Cut(benchMsg, "\r\n\r\n")
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		s, err := cl.Session(gomilter.NewMacroBag())
		if err != nil {
			b.Fatal(err)
		}
		s.Conn("client.example", gomilter.FamilyInet, 4242, "192.0.2.1")
		s.Helo("client.example")
		s.Mail("a@example.com", "")
		s.Rcpt("b@example.org", "")
		s.DataStart()
		for _, line := range strings.Split(hdr, "\r\n") {
			if name, value, ok := strings.Cut(line, ":"); ok {
				s.HeaderField(name, strings.TrimSpace(value), nil)
			}
		}
		s.HeaderEnd()
		mods, _, err := s.BodyReadFrom(strings.NewReader(body))
		if err != nil || len(mods) != 1 {
			b.Fatal(err)
		}
		s.Close()
	}
}
