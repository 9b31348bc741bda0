package auth

import (
	"context"
	"fmt"
)

// PassDBFunc is a PassDB written as a Go function. It returns the stored
// password ("{SCHEME}value"; a bare value is in the Authenticator's
// DefaultScheme, CRYPT by default) or an error wrapping ErrUnknownUser or
// ErrTemporary.
type PassDBFunc func(ctx context.Context, user string) (Credentials, error)

// LookupCredentials implements PassDB.
func (f PassDBFunc) LookupCredentials(ctx context.Context, user string) (Credentials, error) {
	return f(ctx, user)
}

// UserDBFunc is a UserDB written as a Go function.
type UserDBFunc func(ctx context.Context, user string) (User, error)

// LookupUser implements UserDB.
func (f UserDBFunc) LookupUser(ctx context.Context, user string) (User, error) {
	return f(ctx, user)
}

// CheckPasswordFunc is a PassDB that checks passwords itself (a
// PasswordChecker): it returns the user's credentials (Password may be
// empty) when the password is right, or an error wrapping ErrBadPassword,
// ErrUnknownUser or ErrTemporary. It serves Verify, PLAIN and LOGIN only.
type CheckPasswordFunc func(ctx context.Context, user, password string) (Credentials, error)

// CheckPassword implements PasswordChecker.
func (f CheckPasswordFunc) CheckPassword(ctx context.Context, user, password string) (Credentials, error) {
	return f(ctx, user, password)
}

// LookupCredentials implements PassDB: it always fails, as the function
// cannot hand out a stored password.
func (f CheckPasswordFunc) LookupCredentials(ctx context.Context, user string) (Credentials, error) {
	return Credentials{}, fmt.Errorf("auth: the passdb only checks passwords and cannot look up %q's: %w", user, ErrMechanism)
}
