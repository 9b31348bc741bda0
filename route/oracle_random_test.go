package route

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/internal/oracle"
)

// randomAddress builds an address from the pieces the resolver treats
// specially: routing operators, local and remote domains, literals,
// trailing dots and '@', quotes, white space.
func randomAddress(rng *rand.Rand) string {
	locals := []string{"joe", "a b", "joe+ext", "-joe", "MAILER-DAEMON", "", "j.o", `"q"`, "x(c)", "owner-l", "u\\v", "moved", "special", "user+foo", "joe-a+b", "known"}
	domains := []string{"example.com", "localhost", "mx.oracle.test", "remote.example", "relay.example", "sub.relay.example",
		"valias.example", "vmbox.example", "[127.0.0.1]", "[127.0.0.2]", "127.0.0.1", "[IPv6:::1]", "a..b", "", "Example.COM",
		"origin.example", "bücher.example", "host", "-x.example", "a.sub.example", "bounce.example", "remote-moved.example",
		"list.example", "local.example", "a.vsub.example", "parent.example"}
	ops := []string{"@", "%", "!", "@", "@"}
	var b strings.Builder
	if rng.IntN(8) == 0 {
		b.WriteString("@" + domains[rng.IntN(len(domains))] + ":")
	}
	b.WriteString(locals[rng.IntN(len(locals))])
	for n := rng.IntN(4); n > 0; n-- {
		op := ops[rng.IntN(len(ops))]
		d := domains[rng.IntN(len(domains))]
		if op == "!" {
			// site!user: the site goes in front.
			s := b.String()
			b.Reset()
			b.WriteString(d + "!" + s)
			continue
		}
		b.WriteString(op + d)
	}
	switch rng.IntN(10) {
	case 0:
		b.WriteString(".")
	case 1:
		b.WriteString("@")
	case 2:
		b.WriteString("..")
	}
	return b.String()
}

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
		rc := dialRewrite(t, p)
		r := postkitResolver(t, p.ConfigDir)
		rng := rand.New(rand.NewPCG(7, uint64(i)))
		senders := []string{"", "alice@sender.example", "bob", "x@corp.example", "carol@sender.example"}
		seen := map[string]bool{}
		for n := 0; n < 1500; n++ {
			rcpt := randomAddress(rng)
			sender := senders[rng.IntN(len(senders))]
			if seen[sender+"\x00"+rcpt] {
				continue
			}
			seen[sender+"\x00"+rcpt] = true
			want, err := rc.resolve(sender, rcpt)
			if err != nil {
				t.Fatalf("Postfix: %v", err)
			}
			want = want.normalize()
			got := postkitAnswer(r.Resolve(context.Background(), sender, rcpt)).normalize()
			total++
			if got != want {
				diffs++
				if diffs <= 30 {
					t.Errorf("%s: <%s> <%s>\n  Postfix: %s\n  postkit: %s", name, sender, rcpt, want, got)
				}
			}
		}
		rc.c.Close()
	}
	t.Logf("%d generated addresses compared with Postfix, %d differ", total, diffs)
}
