package auth

// Server sides of PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login)
// and CRAM-MD5 (RFC 2195). Challenges and responses are the decoded
// bytes: the protocol (SMTP's 334 lines, IMAP's "+ ") does the base64.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// maxResponse bounds one client response (postkit's limit).
const maxResponse = 8192

// errExchangeOver is returned when Next is called after the end.
var errExchangeOver = fmt.Errorf("auth: the SASL exchange is over: %w", ErrMechanism)

// mechState is what the three simple mechanisms share.
type mechState struct {
	a    *Authenticator
	step int
	over bool
	user string
}

func (m *mechState) User() string { return m.user }

// finish ends the exchange with a result.
func (m *mechState) finish(user string, err error) ([]byte, bool, error) {
	m.over = true
	if err != nil {
		return nil, false, err
	}
	m.user = user
	return nil, true, nil
}

// malformed ends the exchange with a delayed ErrMechanism.
func (m *mechState) malformed(ctx context.Context, mech, user, what string) ([]byte, bool, error) {
	m.over = true
	return nil, false, m.a.failed(ctx, mech, user, nil, fmt.Errorf("auth: %s: %s: %w", mech, what, ErrMechanism))
}

// ---- PLAIN ----------------------------------------------------------------

type plainMech struct{ mechState }

// Next implements ServerMech. The message is [authzid] NUL authcid NUL
// passwd (RFC 4616 section 2); without an initial response the server
// sends an empty challenge first.
func (m *plainMech) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if m.over {
		return nil, false, errExchangeOver
	}
	if m.step == 0 && resp == nil {
		m.step = 1
		return []byte{}, false, nil
	}
	m.step = 2
	if len(resp) > maxResponse {
		return m.malformed(ctx, "PLAIN", "", "response too long")
	}
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 {
		return m.malformed(ctx, "PLAIN", "", "response is not authzid NUL authcid NUL password")
	}
	authzid, authcid, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authcid == "" || !utf8.ValidString(authzid) {
		return m.malformed(ctx, "PLAIN", authcid, "empty authentication identity or bad authorization identity")
	}
	u, creds, err := m.a.verifyPlain(ctx, "PLAIN", authcid, pass)
	if err != nil {
		return m.finish("", err)
	}
	id, err := m.a.authorize(ctx, u.Name, authzid)
	if err != nil {
		return m.finish("", m.a.failed(ctx, "PLAIN", u.Name, creds, err))
	}
	return m.finish(id, nil)
}

// ---- LOGIN ----------------------------------------------------------------

type loginMech struct {
	mechState
	name string
}

// Next implements ServerMech: "Username:", then "Password:". An initial
// response (RFC 4954 allows one) is the user name.
func (m *loginMech) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if m.over {
		return nil, false, errExchangeOver
	}
	if len(resp) > maxResponse {
		return m.malformed(ctx, "LOGIN", m.name, "response too long")
	}
	switch m.step {
	case 0:
		if len(resp) == 0 {
			m.step = 1
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(resp) == 0 {
			return m.malformed(ctx, "LOGIN", "", "empty user name")
		}
		m.name = string(resp)
		m.step = 2
		return []byte("Password:"), false, nil
	}
	u, _, err := m.a.verifyPlain(ctx, "LOGIN", m.name, string(resp))
	if err != nil {
		return m.finish("", err)
	}
	return m.finish(u.Name, nil)
}

// ---- CRAM-MD5 -------------------------------------------------------------

type cramMech struct {
	mechState
	challenge []byte
}

// Next implements ServerMech: the challenge is a message-ID-like string
// (RFC 2195 section 2), the response "user SP 32-hex-digit HMAC-MD5".
func (m *cramMech) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if m.over {
		return nil, false, errExchangeOver
	}
	if m.step == 0 {
		if len(resp) != 0 {
			return m.malformed(ctx, "CRAM-MD5", "", "unexpected initial response")
		}
		var r [8]byte
		rand.Read(r[:])
		m.challenge = fmt.Appendf(nil, "<%d.%d@%s>", binary.BigEndian.Uint64(r[:])>>1, time.Now().Unix(), m.a.hostname())
		m.step = 1
		return slices.Clone(m.challenge), false, nil
	}
	if len(resp) > maxResponse {
		return m.malformed(ctx, "CRAM-MD5", "", "response too long")
	}
	i := bytes.LastIndexByte(resp, ' ')
	if i <= 0 {
		return m.malformed(ctx, "CRAM-MD5", "", "response is not user SP digest")
	}
	given, err := hex.DecodeString(string(resp[i+1:]))
	if err != nil || len(given) != 16 {
		return m.malformed(ctx, "CRAM-MD5", string(resp[:i]), "digest is not 32 hex digits")
	}
	name, err := m.a.normalize(ctx, string(resp[:i]))
	if err != nil {
		return m.finish("", m.a.failed(ctx, "CRAM-MD5", string(resp[:i]), nil, err))
	}
	creds, err := m.a.lookup(ctx, name)
	if err != nil {
		return m.finish("", m.a.failed(ctx, "CRAM-MD5", name, nil, err))
	}
	secret, err := cramSecretOf(creds.Password, m.a.DefaultScheme)
	if err != nil {
		return m.finish("", m.a.failed(ctx, "CRAM-MD5", name, &creds, fmt.Errorf("auth: user %q: %w", name, err)))
	}
	if subtle.ConstantTimeCompare(cramResponse(secret, m.challenge), given) != 1 {
		return m.finish("", m.a.failed(ctx, "CRAM-MD5", name, &creds, fmt.Errorf("auth: user %q: CRAM-MD5 response mismatch: %w", name, ErrBadPassword)))
	}
	if err := m.a.checkExtra(ctx, name, &creds); err != nil {
		return m.finish("", m.a.failed(ctx, "CRAM-MD5", name, &creds, err))
	}
	u := m.a.user(name, &creds)
	return m.finish(u.Name, nil)
}

// ---- secrets from stored passwords ----------------------------------------

// plaintextOf returns the password itself when it is stored in a
// plaintext scheme (PLAIN, CLEAR, CLEARTEXT, with any encoding suffix).
func plaintextOf(stored, defScheme string) ([]byte, bool) {
	name, value := SplitScheme(stored, defScheme)
	s, enc, explicit, err := lookupScheme(name)
	if err != nil || !s.plaintext {
		return nil, false
	}
	raw, err := decodeStored(s, enc, explicit, value)
	if err != nil || len(raw) == 0 {
		return nil, false
	}
	return raw, true
}

// cramSecretOf returns the CRAM-MD5 context from a plaintext or
// {CRAM-MD5}/{HMAC-MD5} stored password.
func cramSecretOf(stored, defScheme string) ([cramContextLen]byte, error) {
	var out [cramContextLen]byte
	if p, ok := plaintextOf(stored, defScheme); ok {
		return cramContext(p), nil
	}
	name, value := SplitScheme(stored, defScheme)
	base, _, _ := strings.Cut(name, ".")
	if base == "CRAM-MD5" || base == "HMAC-MD5" {
		s, enc, explicit, err := lookupScheme(name)
		if err == nil {
			var raw []byte
			if raw, err = decodeStored(s, enc, explicit, value); err == nil {
				copy(out[:], raw)
				return out, nil
			}
		}
		return out, fmt.Errorf("stored CRAM-MD5 secret: %w: %w", ErrMechanism, err)
	}
	return out, fmt.Errorf("password is stored as %s, which cannot serve CRAM-MD5: %w", base, ErrMechanism)
}
