package oracle

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Resolve reply flags of trivial-rewrite (resolve_clnt.h).
const (
	ResolveRouted  = 1 << 1 // the local part still has routing operators
	ResolveError   = 1 << 2 // bad address syntax
	ResolveFail    = 1 << 3 // a table lookup failed
	ResolveLocal   = 1 << 8
	ResolveAlias   = 1 << 9  // virtual alias class
	ResolveVirtual = 1 << 10 // virtual mailbox class
	ResolveRelay   = 1 << 11
	ResolveDefault = 1 << 12
	// ResolveClassMask covers the class flags.
	ResolveClassMask = ResolveLocal | ResolveAlias | ResolveVirtual | ResolveRelay | ResolveDefault
)

// Resolution is trivial-rewrite's answer to a resolve request.
type Resolution struct {
	Transport, Nexthop, Recipient string
	Flags                         int
}

func (a Resolution) String() string {
	return fmt.Sprintf("%s\t%s\t%s\t%d", a.Transport, a.Nexthop, a.Recipient, a.Flags)
}

// RewriteClient talks to a private Postfix's trivial-rewrite daemon over
// its private/rewrite socket, as qmgr, smtpd and cleanup do: attributes
// are NUL-terminated name/value pairs, a request ends with an empty name.
type RewriteClient struct {
	c net.Conn
	r *bufio.Reader
}

// DialRewrite connects to the instance's trivial-rewrite service; the
// connection is closed by the test's cleanup.
func (p *Postfix) DialRewrite(t testing.TB) *RewriteClient {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(p.QueueDir, "private", "rewrite"))
	if err != nil {
		t.Fatalf("oracle: connect to trivial-rewrite: %v", err)
	}
	rc := &RewriteClient{c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	// The server announces its protocol first.
	hello, err := rc.read()
	if err != nil || hello["protocol"] != "trivial_rewrite_protocol" {
		t.Fatalf("oracle: trivial-rewrite greeting: %v %v", hello, err)
	}
	return rc
}

// Close closes the connection.
func (rc *RewriteClient) Close() error { return rc.c.Close() }

func (rc *RewriteClient) read() (map[string]string, error) {
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	m := map[string]string{}
	for {
		name, err := rc.r.ReadString(0)
		if err != nil {
			return m, err
		}
		name = name[:len(name)-1]
		if name == "" {
			return m, nil
		}
		val, err := rc.r.ReadString(0)
		if err != nil {
			return m, err
		}
		// A resolve reply holds "flags" twice: the server's flags
		// (always 0 here), then the resolve flags; the last one wins.
		m[name] = val[:len(val)-1]
	}
}

func (rc *RewriteClient) request(attrs ...string) (map[string]string, error) {
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	for _, a := range attrs {
		b.WriteString(a)
		b.WriteByte(0)
	}
	b.WriteByte(0)
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return rc.read()
}

// Resolve asks for the delivery of rcpt (internal form) for mail from
// sender: the request qmgr sends.
func (rc *RewriteClient) Resolve(sender, rcpt string) (Resolution, error) {
	m, err := rc.request("request", "resolve", "sender", sender, "address", rcpt)
	if err != nil {
		return Resolution{}, err
	}
	flags, err := strconv.Atoi(m["flags"])
	if err != nil {
		return Resolution{}, fmt.Errorf("oracle: resolve reply %v: %v", m, err)
	}
	return Resolution{Transport: m["transport"], Nexthop: m["nexthop"], Recipient: m["recipient"], Flags: flags}, nil
}

// Rewrite asks for the canonical form of addr (internal form) in the
// rewriting context rule, "local" or "remote": the request smtpd and
// cleanup send.
func (rc *RewriteClient) Rewrite(rule, addr string) (string, error) {
	m, err := rc.request("request", "rewrite", "rule", rule, "address", addr)
	if err != nil {
		return "", err
	}
	out, ok := m["address"]
	if !ok {
		return "", fmt.Errorf("oracle: rewrite reply without address: %v", m)
	}
	return out, nil
}

// RandomAddress builds an address for a differential test of address
// rewriting and resolving from the pieces they treat specially: a source
// route, local parts, and up to three routing operators ('@', '%', '!')
// with domains, then sometimes a trailing ".", "@" or "..".
func RandomAddress(rng *rand.Rand, locals, domains []string) string {
	ops := []string{"@", "%", "!", "@", "@"}
	var b strings.Builder
	if rng.IntN(8) == 0 {
		b.WriteString("@" + domains[rng.IntN(len(domains))] + ":")
	}
	b.WriteString(locals[rng.IntN(len(locals))])
	for n := rng.IntN(4); n > 0; n-- {
		op := ops[rng.IntN(len(ops))]
		d := domains[rng.IntN(len(domains))]
		if op == "!" {
			// site!user: the site goes in front.
			s := b.String()
			b.Reset()
			b.WriteString(d + "!" + s)
			continue
		}
		b.WriteString(op + d)
	}
	switch rng.IntN(10) {
	case 0:
		b.WriteString(".")
	case 1:
		b.WriteString("@")
	case 2:
		b.WriteString("..")
	}
	return b.String()
}
