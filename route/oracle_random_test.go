package route

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// The pieces of generated addresses: local parts with routing, quoting,
// comments and white space, and domains of every class of the case files,
// literals, numeric and invalid ones.
var (
	randomLocals  = []string{"joe", "a b", "joe+ext", "-joe", "MAILER-DAEMON", "", "j.o", `"q"`, "x(c)", "owner-l", "u\\v", "moved", "special", "user+foo", "joe-a+b", "known"}
	randomDomains = []string{"example.com", "localhost", "mx.oracle.test", "remote.example", "relay.example", "sub.relay.example",
		"valias.example", "vmbox.example", "[127.0.0.1]", "[127.0.0.2]", "127.0.0.1", "[IPv6:::1]", "a..b", "", "Example.COM",
		"origin.example", "bücher.example", "host", "-x.example", "a.sub.example", "bounce.example", "remote-moved.example",
		"list.example", "local.example", "a.vsub.example", "parent.example"}
)

// TestOracleRandom compares postkit with Postfix on generated addresses,
// under the configurations of two case files.
func TestOracleRandom(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	oracle.Require(t, "postfix")
	var p *oracle.Postfix
	total, diffs := 0, 0
	for i, name := range []string{"10-classes", "60-options", "40-relayhost", "20-transport-maps", "70-tables", "50-transport-params"} {
		var sc oracle.Scenario
		for _, s := range loadCases(t) {
			if s.Name == name {
				sc = s
			}
		}
		if sc.Name == "" {
			t.Fatalf("no case file %s", name)
		}
		if p == nil {
			p = oracle.StartPostfix(t, sc.Options())
		} else {
			p.Reconfigure(t, sc.Main, sc.Files)
		}
		rc := p.DialRewrite(t)
		r := postkitResolver(t, p.ConfigDir)
		rng := rand.New(rand.NewPCG(7, uint64(i)))
		senders := []string{"", "alice@sender.example", "bob", "x@corp.example", "carol@sender.example"}
		seen := map[string]bool{}
		for n := 0; n < 1500; n++ {
			rcpt := oracle.RandomAddress(rng, randomLocals, randomDomains)
			sender := senders[rng.IntN(len(senders))]
			if seen[sender+"\x00"+rcpt] {
				continue
			}
			seen[sender+"\x00"+rcpt] = true
			want, err := rc.Resolve(sender, rcpt)
			if err != nil {
				t.Fatalf("Postfix: %v", err)
			}
			want = normalize(want)
			got := normalize(postkitAnswer(r.Resolve(context.Background(), sender, rcpt)))
			total++
			if got != want {
				diffs++
				if diffs <= 30 {
					t.Errorf("%s: <%s> <%s>\n  Postfix: %s\n  postkit: %s", name, sender, rcpt, want, got)
				}
			}
		}
		rc.Close()
	}
	t.Logf("%d generated addresses compared with Postfix, %d differ", total, diffs)
}
