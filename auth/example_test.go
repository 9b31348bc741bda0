package auth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/postkit-mail/postkit/auth"
)

// A passwd-file in Dovecot's format behind an Authenticator: check a
// password, list the SASL mechanisms for a connection without TLS and
// with it, and run a PLAIN exchange as an SMTP server would.
func Example() {
	dir, _ := os.MkdirTemp("", "auth-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "passwd")

	// HashPassword prints what `doveadm pw -s SHA512-CRYPT` would.
	hash, _ := auth.HashPassword("SHA512-CRYPT", "correct horse")
	os.WriteFile(path, []byte("alice@example.org:"+hash+"\n"), 0o600)

	db, err := auth.OpenPasswdFile(path, auth.PasswdFileOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := &auth.Authenticator{PassDB: db, FailureDelay: -1} // no delay in an example
	ctx := auth.WithClientInfo(context.Background(), auth.ClientInfo{Service: "smtp"})

	u, err := a.Verify(ctx, "Alice@Example.org", "correct horse")
	fmt.Println(u.Name, err)
	_, err = a.Verify(ctx, "alice@example.org", "wrong")
	fmt.Println(errors.Is(err, auth.ErrBadPassword))

	// Postfix's smtpd_sasl_security_options before and after STARTTLS.
	plain, _ := auth.ParseSecurityOptions("noanonymous, noplaintext")
	tls, _ := auth.ParseSecurityOptions("noanonymous")
	fmt.Println(a.Mechanisms(plain), a.Mechanisms(tls))

	// AUTH PLAIN with an initial response (already base64-decoded).
	m, _ := a.NewMech("PLAIN")
	_, done, err := m.Next(ctx, []byte("\x00alice@example.org\x00correct horse"))
	fmt.Println(done, err, m.User())
	// Output:
	// alice@example.org <nil>
	// true
	// [] [PLAIN LOGIN]
	// true <nil> alice@example.org
}

// Stored passwords in any of Dovecot's schemes check the same way.
func ExampleVerifyPassword() {
	for _, stored := range []string{
		"{PLAIN}secret",
		"{SSHA}OKGiOuzg7xLfsdm9X8xXvvLKaLPzM5JL",
		"{MD5-CRYPT}$1$1DnfMW8V$hgA/LIsJ0/dNnqYsCC2ZX1",
		"{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56",
	} {
		ok, err := auth.VerifyPassword(stored, "secret", "")
		fmt.Println(ok, err)
	}
	// Output:
	// true <nil>
	// true <nil>
	// true <nil>
	// true <nil>
}
