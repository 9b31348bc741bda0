package dkim_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/dkim"
)

var fuzzKey = ed25519.NewKeyFromSeed(make([]byte, 32))

func fuzzTXT(ctx context.Context, name string) ([]string, error) {
	rec, _ := dkim.PublicRecord(fuzzKey)
	return []string{rec}, nil
}

// FuzzSignVerify signs arbitrary content and verifies the result: Sign and
// Verify must not panic, and what Sign signs must verify.
func FuzzSignVerify(f *testing.F) {
	f.Add(testMsg)
	f.Add("From: a@example.com\r\n\r\n")
	f.Add("From: a@example.com\r\nSubject: x\r\n\tfolded\r\n\r\nbody  \r\n\r\n")
	f.Add("From: a@example.com\nTo: b\n\nbare LF\n")
	f.Add("no header at all")
	s, err := dkim.NewSigner(func(ctx context.Context, addr, domain string) (*dkim.Key, error) {
		return &dkim.Key{Domain: "example.com", Selector: "fz", Signer: fuzzKey}, nil
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	v := &dkim.Verifier{AuthServID: "fuzz", LookupTXT: fuzzTXT}
	f.Fuzz(func(t *testing.T, msg string) {
		h, err := s.Sign(context.Background(), "a@example.com", strings.NewReader(msg))
		if _, verr := v.AuthenticationResults(context.Background(), strings.NewReader(msg)); verr != nil {
			_ = verr // unparseable headers are an error, not a panic
		}
		if err != nil || h == "" {
			return
		}
		// Only well-formed CRLF content is promised to round-trip.
		if strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\r") ||
			!strings.Contains(msg, "\r\n\r\n") {
			return
		}
		rs, err := v.Verify(context.Background(), strings.NewReader(h+msg))
		if err != nil {
			return
		}
		if len(rs) == 0 || rs[0].Value != dkim.Pass {
			t.Fatalf("own signature does not verify: %+v\n%q", rs, h+msg)
		}
	})
}

// FuzzParseKey: key files are input too.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := dkim.ParseKey(data)
		if err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}
