package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/queue"
)

// ErrNotRunning is returned (wrapped) when nothing answers on the control
// socket: the mail system is down.
var ErrNotRunning = errors.New("the mail system is down")

// Client sends requests to a control server. The zero value with Path set
// is ready; each request uses its own connection.
type Client struct {
	// Path is the control socket (SocketPath of the queue directory).
	Path string
	// Warn receives the warnings of a reply (one line each); nil drops
	// them.
	Warn func(string)
}

// Do sends req and copies the reply's output to out (nil discards it).
// It returns the count of the "ok" record, or the server's *Error.
func (c *Client) Do(ctx context.Context, req *Request, out io.Writer) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return 0, fmt.Errorf("control: connect to %s: %w (%w)", c.Path, ErrNotRunning, err)
		}
		return 0, fmt.Errorf("control: connect to %s: %w", c.Path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Encode(conn); err != nil {
		return 0, fmt.Errorf("control: sending the request: %w", err)
	}
	n, err := readReply(conn, out, c.Warn)
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return n, err
}

// Mailq writes postqueue -p's listing (with json, postqueue -j's).
func (c *Client) Mailq(ctx context.Context, w io.Writer, json bool) error {
	v := VerbMailq
	if json {
		v = VerbMailqJSON
	}
	_, err := c.Do(ctx, &Request{Verb: v}, w)
	return err
}

// Flush is postqueue -f.
func (c *Client) Flush(ctx context.Context) error {
	_, err := c.Do(ctx, &Request{Verb: VerbFlush}, nil)
	return err
}

// FlushSite is postqueue -s SITE; it returns how many messages were
// scheduled.
func (c *Client) FlushSite(ctx context.Context, site string) (int, error) {
	return c.Do(ctx, &Request{Verb: VerbFlushSite, Arg: site}, nil)
}

// Deliver is postqueue -i ID.
func (c *Client) Deliver(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Request{Verb: VerbDeliver, Arg: id}, nil)
	return err
}

// Postcat writes message id as postcat -q does.
func (c *Client) Postcat(ctx context.Context, w io.Writer, id string, o queue.PostcatOptions) error {
	_, err := c.Do(ctx, &Request{Verb: VerbPostcat, Arg: id, Postcat: o}, w)
	return err
}

// Admin applies a postsuper operation to ids (nil means ALL) in states
// (none: the operation's default queues) and returns the IDs of the
// messages it acted on.
func (c *Client) Admin(ctx context.Context, op queue.AdminOp, ids []string, states ...queue.State) ([]string, error) {
	v := AdminVerb(op)
	if v == "" {
		return nil, fmt.Errorf("control: unknown operation %v", op)
	}
	var b strings.Builder
	n, err := c.Do(ctx, &Request{Verb: v, IDs: ids, All: ids == nil, States: states}, &b)
	if err != nil {
		return nil, err
	}
	done := strings.Fields(b.String())
	if len(done) != n {
		return done, fmt.Errorf("control: %s: the server counted %d messages and named %d", v, n, len(done))
	}
	return done, nil
}
