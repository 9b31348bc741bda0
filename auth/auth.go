// Package auth is postkit's user database and authentication layer, shared
// by SMTP AUTH, IMAP and POP3 (Dovecot's auth process and its passdb and
// userdb, in one Go package).
//
// A PassDB finds a user's stored password (in Dovecot's "{SCHEME}hash"
// form); a UserDB finds where the user's mail lives. Databases: Dovecot's
// passwd-file format, SQL (PostgreSQL, MariaDB, SQLite) with Dovecot-style
// queries, and Go callbacks. An Authenticator combines them, checks
// passwords in constant time, and runs the server side of the SASL
// mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256). The Dovecot
// authentication protocol is spoken both ways: as a server, so that a real
// Postfix with smtpd_sasl_type = dovecot authenticates against postkit,
// and as a client, so that postkit authenticates against a real Dovecot.
package auth

import (
	"context"
	"errors"
)

// Errors of lookups and authentication. Wrapped errors keep these
// identities (use errors.Is).
var (
	// ErrUnknownUser: no such user in the database.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrBadPassword: the credentials do not match.
	ErrBadPassword = errors.New("auth: authentication failed")
	// ErrTemporary: the database could not be asked (try again later).
	ErrTemporary = errors.New("auth: temporary failure")
	// ErrMechanism: the SASL exchange was malformed or the mechanism
	// cannot be used with this database (no usable secret).
	ErrMechanism = errors.New("auth: mechanism failure")
)

// Credentials are what a PassDB stores for a user.
type Credentials struct {
	// User is the canonical user name (the database may rewrite it, e.g.
	// lower-case it or add a domain).
	User string
	// Password is the stored password with its scheme prefix,
	// "{SHA512-CRYPT}$6$..."; a value without a prefix is in the
	// database's default scheme.
	Password string
	// Extra holds the database's extra fields (Dovecot's "extra fields":
	// nologin, nopassword, allow_nets, userdb_* ...).
	Extra map[string]string
}

// PassDB looks up a user's credentials.
type PassDB interface {
	LookupCredentials(ctx context.Context, user string) (Credentials, error)
}

// User is what a UserDB knows about a user, for delivery and mail access.
type User struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Mail  string // mail location, e.g. "maildir:~/Maildir"
	Extra map[string]string
}

// UserDB looks up a user's mail location and ids.
type UserDB interface {
	LookupUser(ctx context.Context, user string) (User, error)
}

// ServerMech is the server side of one SASL exchange (RFC 4422). Next is
// called with the client's first response (nil when the client sent no
// initial response) and then with each later response; it returns the
// next challenge, or done with the authenticated user. Errors wrap
// ErrBadPassword, ErrUnknownUser, ErrTemporary or ErrMechanism.
type ServerMech interface {
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// User is the authenticated user (valid once done).
	User() string
}
