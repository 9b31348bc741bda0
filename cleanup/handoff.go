package cleanup

import (
	"context"
	"errors"
	"strings"

	"github.com/postkit-mail/postkit/address"

	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
)

// Handoff returns the SMTP server's hand-off (smtpserver.Config.Handoff):
// the server opens a Message at the first accepted RCPT (the queue file
// is created then, so the queue ID is known), streams the content, and
// commits after the final dot. A refusal in cleanup reaches the client as
// the *smtpserver.ReplyError at the end of DATA; a DISCARD gives 250 and
// queues nothing.
func (c *Cleanup) Handoff() smtpserver.Handoff { return handoff{c} }

type handoff struct{ c *Cleanup }

func (h handoff) Open(ctx context.Context, env *smtpserver.Envelope) (smtpserver.Message, error) {
	in := inputFrom(env)
	m, err := h.c.Open(ctx, in)
	if err != nil {
		return nil, err
	}
	// The server's envelope grows with each RCPT while the message is
	// open; the recipients are read from it when the content starts.
	m.rcptSource = func() []Recipient { return recipientsFrom(env.Recipients) }
	return smtpMessage{m}, nil
}

// inputFrom converts the SMTP server's envelope.
func inputFrom(env *smtpserver.Envelope) *Input {
	in := &Input{
		Sender: env.Sender, Recipients: recipientsFrom(env.Recipients),
		Effects: env.Effects, Size: env.Size, Body: env.Body, Ret: env.Ret,
		EnvID: env.EnvID, SMTPUTF8: env.SMTPUTF8,
	}
	in.Client = clientFrom(env.Session, env.XForward)
	if env.AuthFrom != "" && in.Client.SASLSender == "" {
		in.Client.SASLSender = env.AuthFrom
	}
	return in
}

func recipientsFrom(rs []smtpserver.Recipient) []Recipient {
	out := make([]Recipient, len(rs))
	for i, r := range rs {
		out[i] = Recipient{Addr: r.Addr, Original: r.Addr, Notify: r.Notify, ORCPT: r.ORCPT}
		if r.ORCPT == "" {
			// Postfix's smtpd records the RCPT TO address as the DSN
			// original recipient when the client gave no ORCPT.
			out[i].ORCPT = "rfc822;" + address.Quote(r.Addr)
		}
	}
	return out
}

// clientFrom takes the client from the session snapshot; XFORWARD
// attributes (a content filter re-injecting mail) name the original
// client instead, as in Postfix's logs.
func clientFrom(s *restrictions.Snapshot, xf map[string]string) ClientInfo {
	var ci ClientInfo
	if s != nil {
		ci.Name = s.ClientName
		if ci.Name == "" {
			ci.Name = "unknown"
		}
		if s.ClientAddr.IsValid() {
			ci.Addr = s.ClientAddr.String()
		}
		ci.Port = s.ClientPort
		if s.ServerAddr.IsValid() {
			ci.ServerAddr = s.ServerAddr.String()
		}
		ci.Helo = s.Helo
		ci.Proto = s.Protocol
		if ci.Proto == "" {
			ci.Proto = "SMTP"
			if s.ESMTP {
				ci.Proto = "ESMTP"
			}
		}
		ci.SASLMethod, ci.SASLUsername, ci.SASLSender = s.SASLMethod, s.SASLUsername, s.SASLSender
	}
	for k, v := range xf {
		if v == "" || strings.EqualFold(v, "[UNAVAILABLE]") || strings.EqualFold(v, "[TEMPUNAVAIL]") {
			continue
		}
		switch strings.ToUpper(k) {
		case "NAME":
			ci.Name = v
		case "ADDR":
			ci.Addr = strings.TrimPrefix(v, "IPv6:")
		case "HELO":
			ci.Helo = v
		case "PROTO":
			ci.Proto = v
		}
	}
	return ci
}

// smtpMessage adapts a Message to smtpserver.Message.
type smtpMessage struct{ m *Message }

func (s smtpMessage) ID() string                  { return s.m.ID() }
func (s smtpMessage) Write(p []byte) (int, error) { return s.m.Write(p) }
func (s smtpMessage) Abort() error                { return s.m.Abort() }

func (s smtpMessage) Commit(ctx context.Context, env *smtpserver.Envelope) error {
	m := s.m
	// The final envelope: all recipients, and the effects of the DATA
	// and end-of-data restrictions.
	m.in.Recipients = recipientsFrom(env.Recipients)
	m.rcptSource = nil
	m.in.Effects = env.Effects
	if env.Session != nil {
		m.in.Client = clientFrom(env.Session, env.XForward)
	}
	err := m.Commit(ctx)
	var re *RejectError
	if errors.As(err, &re) {
		return &smtpserver.ReplyError{Reply: re.Reply}
	}
	return err
}
