package auth

// Server side of SCRAM-SHA-256 (RFC 7677, the SHA-256 instance of RFC 5802
// SCRAM). Keys come from a {SCRAM-SHA-256} stored password (Dovecot's
// "iterations,salt,StoredKey,ServerKey") or are derived from a plaintext
// one with a fresh salt. Channel binding (SCRAM-SHA-256-PLUS) is not
// offered, so a client asking for it ("p=") is refused and "y" is accepted
// (RFC 5802 section 6). Passwords are not SASLprepped (neither does
// Dovecot); ASCII passwords are unaffected.
//
// The exchange is four steps: client-first, server-first, client-final,
// server-final; the server-final message ("v=...") is returned as a
// challenge and the exchange completes on the client's (empty) answer, as
// SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE need.
//
// An unknown user, or one without a usable secret, gets a made-up salt
// derived from the name and fails only at the end (RFC 5802 section 9
// suggests this, so that the first step does not tell which users exist).

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type scramMech struct {
	mechState
	gs2Header   string
	clientFirst string // client-first-message-bare
	serverFirst string
	nonce       string // client nonce + server nonce
	name        string // normalized authcid
	authzid     string
	keys        scramKeys
	creds       *Credentials
	failErr     error // the lookup failed; fail at the end
	serverFinal []byte
}

func newSCRAMMech(a *Authenticator) *scramMech {
	return &scramMech{mechState: mechState{a: a}}
}

const scramMech256 = "SCRAM-SHA-256"

// Next implements ServerMech.
func (m *scramMech) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if m.over {
		return nil, false, errExchangeOver
	}
	if len(resp) > maxResponse {
		return m.malformed(ctx, scramMech256, m.name, "response too long")
	}
	switch m.step {
	case 0:
		if len(resp) == 0 {
			// No initial response: an empty challenge asks for it.
			m.step = 1
			return []byte{}, false, nil
		}
		return m.clientFirstMsg(ctx, string(resp))
	case 1:
		return m.clientFirstMsg(ctx, string(resp))
	case 2:
		return m.clientFinalMsg(ctx, string(resp))
	case 3:
		// The client's answer to server-final: nothing (RFC 4954 4).
		if len(resp) != 0 {
			return m.malformed(ctx, scramMech256, m.name, "unexpected data after server-final-message")
		}
		return m.finish(m.user, nil)
	}
	return nil, false, errExchangeOver
}

// scramName decodes a saslname: "=2C" is ',', "=3D" is '=', any other '='
// is an error (RFC 5802 section 5.1).
func scramName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, utf8.ValidString(s) && s != ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	out := b.String()
	return out, utf8.ValidString(out) && out != ""
}

// scramPrintable: a nonce is printable ASCII without ','.
func scramPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return s != ""
}

// clientFirstMsg reads gs2-header client-first-message-bare and answers
// server-first-message.
func (m *scramMech) clientFirstMsg(ctx context.Context, msg string) ([]byte, bool, error) {
	// gs2-header = gs2-cbind-flag "," [authzid] ","
	cb, rest, ok1 := strings.Cut(msg, ",")
	az, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return m.malformed(ctx, scramMech256, "", "client-first-message has no GS2 header")
	}
	switch {
	case cb == "n", cb == "y":
	case strings.HasPrefix(cb, "p="):
		return m.malformed(ctx, scramMech256, "", "channel binding requested but not offered")
	default:
		return m.malformed(ctx, scramMech256, "", "bad GS2 channel binding flag")
	}
	if az != "" {
		v, ok := strings.CutPrefix(az, "a=")
		name, ok2 := scramName(v)
		if !ok || !ok2 {
			return m.malformed(ctx, scramMech256, "", "bad authorization identity")
		}
		m.authzid = name
	}
	m.gs2Header = msg[:len(cb)+1+len(az)+1]
	m.clientFirst = bare
	fields := strings.Split(bare, ",")
	if len(fields) < 2 || strings.HasPrefix(fields[0], "m=") {
		return m.malformed(ctx, scramMech256, "", "client-first-message-bare is not n=user,r=nonce (or asks for an extension)")
	}
	v, ok := strings.CutPrefix(fields[0], "n=")
	authcid, ok2 := scramName(v)
	cnonce, ok3 := strings.CutPrefix(fields[1], "r=")
	if !ok || !ok2 || !ok3 || !scramPrintable(cnonce) {
		return m.malformed(ctx, scramMech256, "", "bad user name or nonce in client-first-message")
	}

	name, err := m.a.normalize(ctx, authcid)
	if err != nil {
		return m.finish("", m.a.failed(ctx, scramMech256, authcid, nil, err))
	}
	m.name = name
	creds, err := m.a.lookup(ctx, name)
	switch {
	case errors.Is(err, ErrTemporary):
		return m.finish("", m.a.failed(ctx, scramMech256, name, nil, err))
	case err != nil:
		m.failErr = err
	default:
		m.creds = &creds
		m.keys, err = m.a.scramKeysOf(creds.Password)
		if err != nil {
			m.failErr = fmt.Errorf("auth: user %q: %w", name, err)
		}
	}
	if m.failErr != nil {
		m.keys = m.a.fakeSCRAMKeys(name)
	}

	snonce := ""
	if m.a.scramNonc != nil {
		snonce = m.a.scramNonc()
	} else {
		var r [18]byte
		rand.Read(r[:])
		snonce = base64.StdEncoding.EncodeToString(r[:])
	}
	m.nonce = cnonce + snonce
	m.serverFirst = "r=" + m.nonce + ",s=" + base64.StdEncoding.EncodeToString(m.keys.salt) + ",i=" + strconv.Itoa(m.keys.iter)
	m.step = 2
	return []byte(m.serverFirst), false, nil
}

// clientFinalMsg checks c=,r=,...,p= and answers server-final-message.
func (m *scramMech) clientFinalMsg(ctx context.Context, msg string) ([]byte, bool, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return m.malformed(ctx, scramMech256, m.name, "client-final-message has no proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	fields := strings.Split(withoutProof, ",")
	if len(fields) < 2 {
		return m.malformed(ctx, scramMech256, m.name, "client-final-message is not c=,r=,p=")
	}
	cbind, ok := strings.CutPrefix(fields[0], "c=")
	cbData, err := base64.StdEncoding.DecodeString(cbind)
	if !ok || err != nil || string(cbData) != m.gs2Header {
		return m.malformed(ctx, scramMech256, m.name, "channel binding data does not repeat the GS2 header")
	}
	nonce, ok := strings.CutPrefix(fields[1], "r=")
	if !ok || !constantTimeEqual(nonce, m.nonce) {
		return m.malformed(ctx, scramMech256, m.name, "nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return m.malformed(ctx, scramMech256, m.name, "bad client proof")
	}

	authMessage := []byte(m.clientFirst + "," + m.serverFirst + "," + withoutProof)
	clientSig := hmacSum(sha256.New, m.keys.storedKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	subtle.XORBytes(clientKey, proof, clientSig)
	sum := sha256.Sum256(clientKey)
	match := subtle.ConstantTimeCompare(sum[:], m.keys.storedKey) == 1

	if m.failErr != nil {
		return m.finish("", m.a.failed(ctx, scramMech256, m.name, m.creds, m.failErr))
	}
	if !match {
		return m.finish("", m.a.failed(ctx, scramMech256, m.name, m.creds, fmt.Errorf("auth: user %q: SCRAM proof mismatch: %w", m.name, ErrBadPassword)))
	}
	if err := m.a.checkExtra(ctx, m.name, m.creds); err != nil {
		return m.finish("", m.a.failed(ctx, scramMech256, m.name, m.creds, err))
	}
	u := m.a.user(m.name, m.creds)
	id, err := m.a.authorize(ctx, u.Name, m.authzid)
	if err != nil {
		return m.finish("", m.a.failed(ctx, scramMech256, u.Name, m.creds, err))
	}
	m.user = id
	serverSig := hmacSum(sha256.New, m.keys.serverKey, authMessage)
	m.step = 3
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), false, nil
}

// scramKeysOf returns SCRAM-SHA-256 keys from a stored password.
func (a *Authenticator) scramKeysOf(stored string) (scramKeys, error) {
	if p, ok := plaintextOf(stored, a.DefaultScheme); ok {
		iter := a.SCRAMIterations
		if iter <= 0 {
			iter = 4096
		}
		salt := make([]byte, 16)
		rand.Read(salt)
		return scramDerive(sha256.New, p, salt, iter)
	}
	name, value := SplitScheme(stored, a.DefaultScheme)
	if name == scramMech256 {
		k, err := parseScramKeys(sha256.New, value)
		if err != nil {
			return k, fmt.Errorf("stored SCRAM-SHA-256 secret: %w: %w", ErrMechanism, err)
		}
		return k, nil
	}
	base, _, _ := strings.Cut(name, ".")
	return scramKeys{}, fmt.Errorf("password is stored as %s, which cannot serve SCRAM-SHA-256: %w", base, ErrMechanism)
}

// fakeSCRAMKeys makes keys nobody can match, with a salt that stays the
// same for a name across attempts.
func (a *Authenticator) fakeSCRAMKeys(name string) scramKeys {
	m := hmac.New(sha256.New, a.fakeKey)
	m.Write([]byte(name))
	salt := m.Sum(nil)[:16]
	stored := make([]byte, sha256.Size)
	server := make([]byte, sha256.Size)
	rand.Read(stored)
	rand.Read(server)
	iter := a.SCRAMIterations
	if iter <= 0 {
		iter = 4096
	}
	return scramKeys{iter: iter, salt: salt, storedKey: stored, serverKey: server}
}
