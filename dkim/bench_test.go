package dkim_test

import (
	"context"
	"crypto"
	"io"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postkit-mail/postkit/dkim"
)

// benchMsg is a typical small message (about 4 KB of body).
var benchMsg = testMsg + strings.Repeat("A line of body text that goes on for a while, as mail does.\r\n", 64)

func benchKeys(b *testing.B) map[string]crypto.Signer {
	rk, ek := testKeys(b)
	return map[string]crypto.Signer{"rsa2048": rk, "ed25519": ek}
}

// BenchmarkSign is postkit's Sign; BenchmarkSignBaseline is go-msgauth's
// Signer alone with the same header list, the floor for the wrapper.
func BenchmarkSign(b *testing.B) {
	for name, key := range benchKeys(b) {
		b.Run(name, func(b *testing.B) {
			s, _ := dkim.NewSigner(fixedKey(&dkim.Key{Domain: "example.com", Selector: "s", Signer: key}), nil)
			b.SetBytes(int64(len(benchMsg)))
			for b.Loop() {
				if _, err := s.Sign(context.Background(), "alice@example.com", strings.NewReader(benchMsg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignBaseline(b *testing.B) {
	for name, key := range benchKeys(b) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(benchMsg)))
			for b.Loop() {
				s, err := msgdkim.NewSigner(&msgdkim.SignOptions{Domain: "example.com", Selector: "s", Signer: key,
					HeaderCanonicalization: msgdkim.CanonicalizationRelaxed, BodyCanonicalization: msgdkim.CanonicalizationRelaxed,
					HeaderKeys: []string{"From", "From", "Subject", "Date", "To", "Message-ID"}})
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(s, strings.NewReader(benchMsg))
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify is postkit's Verify (with the Authentication-Results
// text); BenchmarkVerifyBaseline is go-msgauth's VerifyWithOptions alone.
func BenchmarkVerify(b *testing.B) {
	for name, key := range benchKeys(b) {
		b.Run(name, func(b *testing.B) {
			signed := sign(b, key, "s", nil, benchMsg)
			rec, _ := dkim.PublicRecord(key)
			v := &dkim.Verifier{AuthServID: "mx", LookupTXT: func(ctx context.Context, name string) ([]string, error) { return []string{rec}, nil }}
			b.SetBytes(int64(len(signed)))
			for b.Loop() {
				ar, err := v.AuthenticationResults(context.Background(), strings.NewReader(signed))
				if err != nil || !strings.Contains(ar, "dkim=pass") {
					b.Fatal(ar, err)
				}
			}
		})
	}
}

func BenchmarkVerifyBaseline(b *testing.B) {
	for name, key := range benchKeys(b) {
		b.Run(name, func(b *testing.B) {
			signed := sign(b, key, "s", nil, benchMsg)
			rec, _ := dkim.PublicRecord(key)
			opts := &msgdkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{rec}, nil }}
			b.SetBytes(int64(len(signed)))
			for b.Loop() {
				vs, err := msgdkim.VerifyWithOptions(strings.NewReader(signed), opts)
				if err != nil || vs[0].Err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
