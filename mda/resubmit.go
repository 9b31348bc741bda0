package mda

import (
	"context"
	"fmt"
	"io"

	"github.com/postkit-mail/postkit/cleanup"
)

// Resubmitter queues a new message: local(8) uses it to forward mail to
// the addresses an alias or .forward names (logged "forwarded as NEWID").
type Resubmitter interface {
	// Resubmit queues content (CRLF lines, headers then body) from sender
	// to rcpts and returns the new queue ID. env is the original message's
	// envelope: its arrival time, BODY=, SMTPUTF8 and client are kept,
	// and its RET and ENVID too unless nil (an owner- alias drops them).
	Resubmit(ctx context.Context, sender string, rcpts []cleanup.Recipient, env *cleanup.Envelope, content io.Reader) (string, error)
}

// NewCleanupResubmitter returns a Resubmitter that writes through c, as
// Postfix's local(8) hands forwarded mail to cleanup(8). The new message
// keeps the original arrival time, so it expires with the original.
func NewCleanupResubmitter(c *cleanup.Cleanup) Resubmitter {
	return &cleanupResubmitter{c: c}
}

type cleanupResubmitter struct{ c *cleanup.Cleanup }

func (r *cleanupResubmitter) Resubmit(ctx context.Context, sender string, rcpts []cleanup.Recipient, env *cleanup.Envelope, content io.Reader) (string, error) {
	if len(rcpts) == 0 {
		return "", fmt.Errorf("mda: resubmit: no recipients")
	}
	in := &cleanup.Input{
		Sender:     sender,
		Recipients: rcpts,
		// Forwarded mail is an internal submission: header addresses
		// are rewritten in the local context, as for Postfix's local(8).
		Local: true,
	}
	if env != nil {
		in.Arrival = env.Arrival
		in.Body = env.Body
		in.SMTPUTF8 = env.SMTPUTF8
		in.Ret = env.Ret
		in.EnvID = env.EnvID
		in.Size = env.Size
	}
	m, err := r.c.Open(ctx, in)
	if err != nil {
		return "", fmt.Errorf("mda: resubmit: %w", err)
	}
	if _, err := io.Copy(m, content); err != nil {
		m.Abort()
		return "", fmt.Errorf("mda: resubmit %s: copying the message: %w", m.ID(), err)
	}
	if err := m.Commit(ctx); err != nil {
		return "", fmt.Errorf("mda: resubmit %s: %w", m.ID(), err)
	}
	return m.ID(), nil
}
