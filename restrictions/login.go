package restrictions

import (
	"context"
	"strings"

	"github.com/postkit-mail/postkit/maps"
)

// The sender login mismatch restrictions compare the SASL login with the
// owners smtpd_sender_login_maps lists for the MAIL FROM address
// (postconf(5) smtpd_sender_login_maps). A table value holds login names
// separated by commas or white space. reject_sender_login_mismatch is the
// built-in restriction class "reject_authenticated_sender_login_mismatch
// reject_unauthenticated_sender_login_mismatch" (config.go).
var loginBuiltins = map[string]*builtin{
	"reject_authenticated_sender_login_mismatch": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		sender, ok := e.loginCheck(el)
		if !ok {
			return statusDunno, nil
		}
		return e.authSenderLoginMismatch(ctx, sender, false)
	}},
	"reject_unauthenticated_sender_login_mismatch": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		sender, ok := e.loginCheck(el)
		if !ok {
			return statusDunno, nil
		}
		return e.unauthSenderLoginMismatch(ctx, sender)
	}},
	// reject_known_sender_login_mismatch (3.6): like
	// reject_sender_login_mismatch, but an authenticated client may use a
	// sender address that has no owner.
	"reject_known_sender_login_mismatch": {run: func(ctx context.Context, e *eval, el *elem) (status, error) {
		sender, ok := e.loginCheck(el)
		if !ok {
			return statusDunno, nil
		}
		if e.s.SASLUsername != "" {
			return e.authSenderLoginMismatch(ctx, sender, true)
		}
		return e.unauthSenderLoginMismatch(ctx, sender)
	}},
}

// loginCheck returns the sender to check, warning as Postfix does when
// SASL is off.
func (e *eval) loginCheck(el *elem) (string, bool) {
	if !e.c.cfg.SASLEnabled {
		e.warnf("restriction `%s' ignored: no SASL support", el.raw)
		return "", false
	}
	return e.sender()
}

// senderOwners looks up the owners of sender in smtpd_sender_login_maps,
// by its resolved form and the default address search (user+ext@domain,
// user@domain, user when the domain is local, @domain).
func (e *eval) senderOwners(ctx context.Context, sender string) (string, bool, error) {
	res, err := e.c.dest.resolve(ctx, e, sender, true)
	if err != nil {
		_, err = e.resolveFailed(sender)
		return "", false, err
	}
	r, ok, err := e.findAddr(ctx, e.c.dest.loginMaps, res.Address, sender)
	return r.Value, ok, err
}

// authSenderLoginMismatch is reject_auth_sender_login_mismatch: a client
// that logged in must own the sender address. With allowUnknown, an
// address without owners is let through. Note that an empty
// smtpd_sender_login_maps owns nothing, so every logged-in sender is
// rejected, as in Postfix.
func (e *eval) authSenderLoginMismatch(ctx context.Context, sender string, allowUnknown bool) (status, error) {
	user := e.s.SASLUsername
	if user == "" {
		return statusDunno, nil
	}
	owners, found, err := e.senderOwners(ctx, sender)
	if err != nil {
		return statusDunno, err
	}
	if !found && allowUnknown {
		return statusDunno, nil
	}
	if found {
		for _, name := range strings.FieldsFunc(owners, func(r rune) bool { return strings.ContainsRune(", \t\r\n", r) }) {
			if sameLogin(user, name) {
				return statusDunno, nil
			}
		}
	}
	return e.rejectText(classPolicy, 553, "5.7.1",
		"<"+sender+">: Sender address rejected: not owned by user "+user), nil
}

// unauthSenderLoginMismatch is reject_unauth_sender_login_mismatch: a
// sender address that has an owner requires a login.
func (e *eval) unauthSenderLoginMismatch(ctx context.Context, sender string) (status, error) {
	if e.s.SASLUsername != "" {
		return statusDunno, nil
	}
	_, found, err := e.senderOwners(ctx, sender)
	if err != nil || !found {
		return statusDunno, err
	}
	return e.rejectText(classPolicy, 553, "5.7.1", "<"+sender+">: Sender address rejected: not logged in"), nil
}

// sameLogin compares login names as strcasecmp_utf8 does.
func sameLogin(a, b string) bool {
	return strings.EqualFold(a, b) || maps.FoldKey(a) == maps.FoldKey(b)
}
