package dkim_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/postkit-mail/postkit/dkim"
)

// Sign with a key per sender domain, then verify and write the
// Authentication-Results value.
func Example() {
	_, priv, _ := ed25519.GenerateKey(nil)
	record, _ := dkim.PublicRecord(priv) // publish at ed._domainkey.example.com
	keys := func(ctx context.Context, addr, domain string) (*dkim.Key, error) {
		if domain != "example.com" {
			return nil, nil // not ours: no signature
		}
		return &dkim.Key{Domain: "example.com", Selector: "ed", Signer: priv}, nil
	}
	signer, _ := dkim.NewSigner(keys, nil) // relaxed/relaxed, From oversigned
	msg := "From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	sig, _ := signer.Sign(context.Background(), "a@example.com", strings.NewReader(msg))

	v := &dkim.Verifier{AuthServID: "mx.example.org",
		LookupTXT: func(ctx context.Context, name string) ([]string, error) { return []string{record}, nil }}
	results, _ := v.Verify(context.Background(), strings.NewReader(sig+msg))
	fmt.Println(results[0].Value, results[0].Domain, results[0].Selector)
	// Output: pass example.com ed
}
