package auth

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkVerifyPassword measures one password check per scheme at
// HashPassword's (Dovecot's) default costs, so that a server can budget
// its logins: PLAIN is the baseline.
func BenchmarkVerifyPassword(b *testing.B) {
	for _, scheme := range []string{
		"PLAIN", "PLAIN-MD5", "SHA256", "SSHA", "SSHA256", "SSHA512", "CRAM-MD5",
		"DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT",
		"SCRAM-SHA-256", "PBKDF2", "ARGON2I", "ARGON2ID",
	} {
		stored, err := HashPassword(scheme, "correct horse battery staple")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(scheme, func(b *testing.B) {
			for b.Loop() {
				if ok, err := VerifyPassword(stored, "correct horse battery staple", ""); !ok || err != nil {
					b.Fatalf("%s: %v %v", scheme, ok, err)
				}
			}
		})
	}
}

// BenchmarkAuthenticator measures whole logins through an Authenticator
// over a passwd-file: Verify, and each SASL mechanism's exchange.
func BenchmarkAuthenticator(b *testing.B) {
	path := filepath.Join(b.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte("u@example.org:{PLAIN}pw\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	db, err := OpenPasswdFile(path, PasswdFileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	a := &Authenticator{PassDB: db, Hostname: "h"}
	ctx := context.Background()
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := a.Verify(ctx, "u@example.org", "pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PLAIN", func(b *testing.B) {
		for b.Loop() {
			m, _ := a.NewMech("PLAIN")
			if _, done, err := m.Next(ctx, []byte("\x00u@example.org\x00pw")); !done || err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CRAM-MD5", func(b *testing.B) {
		for b.Loop() {
			m, _ := a.NewMech("CRAM-MD5")
			ch, _, _ := m.Next(ctx, nil)
			c := cramContext([]byte("pw"))
			resp := []byte("u@example.org " + hexString(cramResponse(c, ch)))
			if _, done, err := m.Next(ctx, resp); !done || err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SCRAM-SHA-256", func(b *testing.B) {
		for b.Loop() {
			m, _ := a.NewMech("SCRAM-SHA-256")
			cl := &scramClient{user: "u@example.org", pass: "pw", cnonce: "abcdef"}
			ch, _, err := m.Next(ctx, cl.clientFirst())
			if err != nil {
				b.Fatal(err)
			}
			final, _ := cl.clientFinal(string(ch))
			if _, _, err := m.Next(ctx, final); err != nil {
				b.Fatal(err)
			}
			if _, done, err := m.Next(ctx, nil); !done || err != nil {
				b.Fatal(err)
			}
		}
	})
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}
