package smtp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/smtpclient"
)

// credentials finds the smtp_sasl_password_maps entry for a session. The
// keys are tried in this order: the sender (only with
// smtp_sender_dependent_authentication; the address, then "@domain"), the
// destination as written ("[relay.example]:587"), the server's host name,
// "[host]:port" and "[host]" of the server, and the nexthop domain. The
// value is "user:password".
func (a *Agent) credentials(ctx context.Context, sender string, d dest, t target) (user, pass string, found bool, err error) {
	if !a.cfg.SASLEnable || len(a.cfg.SASLPasswords) == 0 {
		return "", "", false, nil
	}
	var keys []string
	if a.cfg.SenderDependentAuth && sender != "" {
		keys = append(keys, sender)
		if at := strings.LastIndexByte(sender, '@'); at >= 0 {
			keys = append(keys, sender[at:])
		}
	}
	keys = append(keys, d.raw)
	if t.unix == "" {
		keys = append(keys, t.host, "["+t.host+"]:"+strconv.Itoa(t.port), "["+t.host+"]")
	}
	keys = append(keys, d.host)
	for _, k := range keys {
		res, ok, lerr := a.cfg.SASLPasswords.Find(ctx, strings.ToLower(k))
		if lerr != nil {
			return "", "", false, lerr
		}
		if ok {
			u, p, _ := strings.Cut(res.Value, ":")
			return u, p, true, nil
		}
	}
	return "", "", false, nil
}

// mechanismOrder is the client's preference among the mechanisms it
// knows: the one that does not send the password first.
var mechanismOrder = []string{"CRAM-MD5", "PLAIN", "LOGIN"}

// authenticate runs AUTH on a session when a password is configured for
// it and the server offers AUTH (spec: smtp_sasl_auth_enable). Postfix's
// texts and its default smtp_sasl_auth_soft_bounce (failures defer).
func (a *Agent) authenticate(ctx context.Context, c *smtpclient.Client, env *txn, d dest, t target) *failure {
	user, pass, found, err := a.credentials(ctx, env.from, d, t)
	site := t.site(a.cfg.MyHostname)
	if err != nil {
		return &failure{dsn: "4.3.0", reason: fmt.Sprintf("smtp_sasl_password_maps lookup error for %s: %v", site, err)}
	}
	if !found || len(c.Extensions().Auth) == 0 {
		return nil
	}
	_, onTLS := c.TLSConnectionState()
	sec := a.cfg.SASLSecurity
	if onTLS {
		sec = a.cfg.SASLTLSSecurity
	}
	var mech smtpclient.Mechanism
pick:
	for _, name := range mechanismOrder {
		if !containsFold(c.Extensions().Auth, name) {
			continue
		}
		if len(a.cfg.SASLMechanismFilter) > 0 && !containsFold(a.cfg.SASLMechanismFilter, name) {
			continue
		}
		if flags, ok := auth.MechanismFlags(name); ok && !sec.Allows(flags) {
			continue
		}
		switch name {
		case "CRAM-MD5":
			mech = smtpclient.CRAMMD5(user, pass)
		case "PLAIN":
			mech = smtpclient.Plain("", user, pass)
		case "LOGIN":
			mech = smtpclient.Login(user, pass)
		}
		break pick
	}
	if mech == nil {
		// Postfix 3.7 with Cyrus SASL says this (oracle_test.go).
		return &failure{dsn: "4.7.0", site: true, reason: fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: no mechanism available", site)}
	}
	err = c.Auth(ctx, mech)
	var re *smtpclient.ReplyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return &failure{dsn: softDSN(re.Reply.DSN()), site: true, reason: fmt.Sprintf("SASL authentication failed; server %s said: %s", site, re.Reply)}
	case errors.Is(err, smtpclient.ErrAuthLoop):
		return &failure{dsn: "4.7.0", site: true, reason: fmt.Sprintf("SASL authentication failed; authentication protocol loop with server %s", site)}
	}
	if f := a.connFailure(err, t); f != nil && isConnErr(err) {
		return f
	}
	return &failure{dsn: "4.7.0", site: true, reason: fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: %v", site, err)}
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
