package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/postkit-mail/postkit/auth"
)

// Postfix authenticates its SMTP clients against postkit with, in main.cf:
//
//	smtpd_sasl_auth_enable = yes
//	smtpd_sasl_type = dovecot
//	smtpd_sasl_path = private/auth
//
// (a path relative to queue_directory, or an absolute one, or
// inet:host:port for a TCP listener). The socket must be writable by user
// postfix.
func ExampleDovecotServer() {
	var backend auth.DovecotBackend // an *auth.Authenticator, or a *auth.DovecotClient to relay
	ln, err := auth.ListenDovecotUnix("/var/spool/postfix/private/auth", 0o666)
	if err != nil {
		log.Fatal(err)
	}
	srv := &auth.DovecotServer{Backend: backend}
	if err := srv.Serve(context.Background(), ln); err != nil {
		log.Fatal(err)
	}
}

// Checking a password against a running Dovecot, as an IMAP or POP3 server
// does for LOGIN or USER/PASS.
func ExampleDovecotClient_Verify() {
	ctx := context.Background()
	dc, err := auth.DialDovecot(ctx, "unix", "/run/dovecot/auth-client", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer dc.Close()
	user, err := dc.Verify(ctx, auth.DovecotRequest{ClientInfo: auth.ClientInfo{
		Service:    "imap",
		RemoteAddr: netip.MustParseAddrPort("192.0.2.7:50123"),
		Secured:    true,
	}}, "alice@example.com", "secret")
	var refused *auth.DovecotError
	switch {
	case errors.Is(err, auth.ErrTemporary):
		fmt.Println("NO [UNAVAILABLE] try again later")
	case errors.As(err, &refused):
		fmt.Println("NO [AUTHENTICATIONFAILED]", refused.Reason)
	case err == nil:
		fmt.Println("OK logged in as", user)
	}
}

// An SMTP server relays a SASL exchange to Dovecot step by step, as
// Postfix does: each challenge goes to the SMTP client as a 334 reply,
// each of its answers back to Dovecot.
func ExampleDovecotClient_Start() {
	ctx := context.Background()
	dc, err := auth.DialDovecot(ctx, "unix", "/var/spool/postfix/private/auth", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer dc.Close()
	fmt.Println("250-AUTH", dc.Mechanisms(auth.SecurityOptions{NoAnonymous: true}))

	// The client sent "AUTH LOGIN" without an initial response.
	x, err := dc.Start("LOGIN", auth.DovecotRequest{ClientInfo: auth.ClientInfo{
		Service:    "smtp",
		RemoteAddr: netip.MustParseAddrPort("192.0.2.7:50123"),
	}})
	if err != nil {
		log.Fatal(err)
	}
	var response []byte // nil: no initial response
	for {
		challenge, done, err := x.Next(ctx, response)
		if errors.Is(err, auth.ErrTemporary) {
			fmt.Println("454 4.7.0 Temporary authentication failure")
			return
		}
		if err != nil {
			fmt.Println("535 5.7.8 Authentication failed")
			return
		}
		if done {
			fmt.Println("235 2.7.0 Authentication successful for", x.User())
			return
		}
		fmt.Printf("334 %s\n", challenge) // base64 on the wire
		response = []byte("...")          // the client's decoded answer
	}
}

// Both sides in one process: an Authenticator served on a UNIX socket, and
// a DovecotClient checking passwords through it.
func ExampleDovecotServer_authenticator() {
	ctx := context.Background()
	a := &auth.Authenticator{
		PassDB: auth.PassDBFunc(func(ctx context.Context, user string) (auth.Credentials, error) {
			if user == "alice@example.com" {
				return auth.Credentials{Password: "{PLAIN}secret"}, nil
			}
			return auth.Credentials{}, auth.ErrUnknownUser
		}),
		FailureDelay: -1, // no delay after a failure, for the example
		Logger:       slog.New(slog.DiscardHandler),
	}
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "auth")
	ln, err := auth.ListenDovecotUnix(path, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	srv := &auth.DovecotServer{Backend: a, Logger: slog.New(slog.DiscardHandler)}
	go srv.Serve(ctx, ln)
	defer srv.Close()

	dc, err := auth.DialDovecot(ctx, "unix", path, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer dc.Close()
	fmt.Println(dc.Mechanisms(auth.SecurityOptions{}))
	user, err := dc.Verify(ctx, auth.DovecotRequest{}, "Alice@Example.com", "secret")
	fmt.Println(user, err)
	_, err = dc.Verify(ctx, auth.DovecotRequest{}, "alice@example.com", "wrong")
	fmt.Println(errors.Is(err, auth.ErrBadPassword))
	// Output:
	// [PLAIN LOGIN]
	// alice@example.com <nil>
	// true
}
