package smtpclient

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Mechanism is the client side of one SASL mechanism (RFC 4422).
type Mechanism interface {
	// Name is the mechanism's name ("PLAIN").
	Name() string
	// Start returns the initial response; nil sends none (the server's
	// first challenge comes with 334), an empty non-nil slice sends "=".
	Start() ([]byte, error)
	// Next answers a server challenge.
	Next(challenge []byte) ([]byte, error)
}

// Plain is SASL PLAIN (RFC 4616): the password travels in the clear, so
// send it only over TLS unless the policy says otherwise.
func Plain(identity, user, password string) Mechanism {
	return &plainMech{identity, user, password}
}

type plainMech struct{ identity, user, password string }

func (m *plainMech) Name() string { return "PLAIN" }
func (m *plainMech) Start() ([]byte, error) {
	return []byte(m.identity + "\x00" + m.user + "\x00" + m.password), nil
}
func (m *plainMech) Next([]byte) ([]byte, error) {
	return nil, errors.New("PLAIN: unexpected server challenge")
}

// Login is the LOGIN mechanism (draft-murchison-sasl-login): the user name
// and the password as answers to the "Username:" and "Password:" prompts.
func Login(user, password string) Mechanism { return &loginMech{user: user, password: password} }

type loginMech struct {
	user, password string
	step           int
}

func (m *loginMech) Name() string           { return "LOGIN" }
func (m *loginMech) Start() ([]byte, error) { return nil, nil }
func (m *loginMech) Next(ch []byte) ([]byte, error) {
	m.step++
	p := strings.ToLower(string(ch))
	switch {
	case strings.HasPrefix(p, "user"):
		return []byte(m.user), nil
	case strings.HasPrefix(p, "pass"):
		return []byte(m.password), nil
	case m.step == 1:
		return []byte(m.user), nil
	case m.step == 2:
		return []byte(m.password), nil
	}
	return nil, fmt.Errorf("LOGIN: unexpected challenge %q", clip(string(ch)))
}

// CRAMMD5 is CRAM-MD5 (RFC 2195): the answer is an HMAC-MD5 of the
// server's challenge keyed with the password.
func CRAMMD5(user, password string) Mechanism { return &cramMech{user, password} }

type cramMech struct{ user, password string }

func (m *cramMech) Name() string           { return "CRAM-MD5" }
func (m *cramMech) Start() ([]byte, error) { return nil, nil }
func (m *cramMech) Next(ch []byte) ([]byte, error) {
	h := hmac.New(md5.New, []byte(m.password))
	h.Write(ch)
	return []byte(m.user + " " + hex.EncodeToString(h.Sum(nil))), nil
}

// maxAuthRounds stops a server that keeps challenging (Postfix's
// "authentication protocol loop").
const maxAuthRounds = 10

// ErrAuthLoop is returned when a server sends more challenges than any
// supported mechanism needs.
var ErrAuthLoop = errors.New("smtpclient: authentication protocol loop")

// Auth authenticates with m (RFC 4954). A refusal is a *ReplyError with
// Command "AUTH command"; a broken exchange is an *Error or ErrAuthLoop.
func (c *Client) Auth(ctx context.Context, m Mechanism) error {
	defer c.watch(ctx)()
	ir, err := m.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + m.Name()
	if ir != nil {
		if len(ir) == 0 {
			line += " ="
		} else {
			line += " " + base64.StdEncoding.EncodeToString(ir)
		}
	}
	r, err := c.cmd(c.to.Auth, "performing the AUTH exchange", line)
	for round := 0; err == nil && r.Code == 334; round++ {
		if round >= maxAuthRounds {
			c.write("*")
			c.flush(c.to.Auth, "performing the AUTH exchange")
			c.read(c.to.Auth, "performing the AUTH exchange")
			return ErrAuthLoop
		}
		var text string
		if len(r.Lines) > 0 {
			text = r.Lines[0]
		}
		ch, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
		if derr != nil {
			c.write("*")
			c.flush(c.to.Auth, "performing the AUTH exchange")
			c.read(c.to.Auth, "performing the AUTH exchange")
			return fmt.Errorf("smtpclient: AUTH %s: bad challenge %q: %w", m.Name(), clip(text), derr)
		}
		resp, nerr := m.Next(ch)
		if nerr != nil {
			c.write("*")
			c.flush(c.to.Auth, "performing the AUTH exchange")
			c.read(c.to.Auth, "performing the AUTH exchange")
			return fmt.Errorf("smtpclient: AUTH %s: %w", m.Name(), nerr)
		}
		r, err = c.cmd(c.to.Auth, "performing the AUTH exchange", base64.StdEncoding.EncodeToString(resp))
	}
	if err != nil {
		return err
	}
	if r.Code != 235 {
		return &ReplyError{Command: "AUTH command", Reply: r}
	}
	switch mm := m.(type) {
	case *plainMech:
		c.authed = mm.user
	case *loginMech:
		c.authed = mm.user
	case *cramMech:
		c.authed = mm.user
	default:
		c.authed = m.Name()
	}
	return nil
}
