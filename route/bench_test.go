package route

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// benchQueries is a mix of what a queue manager asks: local, virtual,
// relay and remote recipients, with and without transport_maps matches and
// sender-dependent relayhosts.
var benchQueries = []query{
	{Sender: "alice@sender.example", Rcpt: "x@remote.example"},
	{Sender: "someone@corp.example", Rcpt: "joe+tag@relay.example"},
	{Sender: "", Rcpt: "x@example.com"},
	{Sender: "s@sender.example", Rcpt: "x@vmbox.example"},
	{Sender: "carol@sender.example", Rcpt: "x@a.b.sub.example"},
	{Sender: "s@sender.example", Rcpt: "joe%remote.example@example.com"},
}

// benchCase is the configuration of the benchmarks: the relayhost case
// file plus a transport table.
func benchCase(b *testing.B) oracle.Scenario {
	scs, err := oracle.LoadScenarios(filepath.Join("testdata", "oracle"))
	if err != nil {
		b.Fatal(err)
	}
	for _, sc := range scs {
		if sc.Name == "40-relayhost" {
			sc.Main += "transport_maps = hash:$config_directory/transport\n"
			sc.Files = append(sc.Files, oracle.File{Name: "transport", Postmap: "hash",
				Data: ".sub.example smtp:[sub-gw.example]\nspecial@example.com lmtp:unix:/run/lmtp\n"})
			return sc
		}
	}
	b.Fatal("no 40-relayhost case")
	return oracle.Scenario{}
}

// BenchmarkResolve measures Resolve; the postfix sub-benchmark asks
// Postfix's trivial-rewrite the same questions over its socket (what
// Postfix's queue manager pays per recipient), as the baseline of the
// same run.
func BenchmarkResolve(b *testing.B) {
	sc := benchCase(b)
	dir := b.TempDir()
	main := oracle.DefaultMainCF(dir) + sc.Main
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, f := range sc.Files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Data), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	r := postkitResolver(b, dir)
	ctx := context.Background()
	b.Run("postkit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			q := benchQueries[i%len(benchQueries)]
			if _, err := r.Resolve(ctx, q.Sender, q.Rcpt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("postkit-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				q := benchQueries[i%len(benchQueries)]
				i++
				if _, err := r.Resolve(ctx, q.Sender, q.Rcpt); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("postfix", func(b *testing.B) {
		p := oracle.StartPostfix(b, sc.Options())
		rc := p.DialRewrite(b)
		for i := 0; b.Loop(); i++ {
			q := benchQueries[i%len(benchQueries)]
			if _, err := rc.Resolve(q.Sender, q.Rcpt); err != nil {
				b.Fatal(err)
			}
		}
	})
}
