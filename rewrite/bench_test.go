package rewrite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// The benchmarks report Header and VirtualAlias next to baselines in the
// same run: address.ParseList over the same header value (parsing alone,
// no rewriting), and one maps.List.FindAddress search (the table search
// one expansion step needs).

func benchRewriter(b *testing.B) *Rewriter {
	c := Defaults("origin.test", "example.test")
	c.Logger = quiet()
	c.RecipientDelimiter = "+"
	canon := maps.StaticMap{}
	virt := maps.StaticMap{}
	for i := 0; i < 1000; i++ {
		canon[fmt.Sprintf("user%d@origin.test", i)] = fmt.Sprintf("first.last%d@example.com", i)
		virt[fmt.Sprintf("user%d@example.com", i)] = fmt.Sprintf("box%d@mail.example.com", i)
	}
	virt["team@example.com"] = "user1@example.com, user2@example.com, user3@example.com, lead@example.com"
	virt["lead@example.com"] = "user4@example.com, lead@example.com"
	virt["all@example.com"] = "team@example.com, user5@example.com, user6@example.com, user7@example.com"
	c.CanonicalMaps = maps.List{canon}
	c.VirtualAliasMaps = maps.List{virt}
	c.MasqueradeDomains = []string{"example.com"}
	r, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

var benchHeaders = []struct{ name, value string }{
	{"unchanged", " \"Joe Q. Public\" <john.q.public@example.com>\r\n"},
	{"rewritten", " Mary <user1>, user2@origin.test (Two),\r\n\t\"Three, Esq.\" <user3@host.example.com>, team: user4, user5@x.test;\r\n"},
}

func BenchmarkHeader(b *testing.B) {
	r := benchRewriter(b)
	ctx := context.Background()
	for _, h := range benchHeaders {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(h.value)))
			for b.Loop() {
				if _, _, err := r.HeaderLine(ctx, "To", h.value, "", false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(h.name+"/baseline-ParseList", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(h.value)))
			v := strings.ReplaceAll(h.value, "\r\n", "")
			for b.Loop() {
				address.ParseList(v)
			}
		})
	}
}

func BenchmarkVirtualAlias(b *testing.B) {
	r := benchRewriter(b)
	ctx := context.Background()
	for _, a := range []string{"nobody@other.test", "user7@example.com", "user7+tag@example.com", "all@example.com"} {
		b.Run(a, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.VirtualAlias(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("baseline-FindAddress", func(b *testing.B) {
		b.ReportAllocs()
		s := r.strategy(maps.ExternalFirst)
		for b.Loop() {
			if _, _, err := r.cfg.VirtualAliasMaps.FindAddress(ctx, "user7@example.com", s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSenderRecipient(b *testing.B) {
	r := benchRewriter(b)
	ctx := context.Background()
	b.Run("Sender", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Sender(ctx, "user9", false)
		}
	})
	b.Run("Recipient", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Recipient(ctx, "someone@host.example.com", false)
		}
	})
}
