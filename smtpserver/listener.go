package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/config"
)

// ListenerConfig configures a Listener: the connect stage below TLS.
type ListenerConfig struct {
	// Hostname is $myhostname, named in the 421 replies (and the default
	// of Limits.Hostname).
	Hostname string
	// Limits are the per-client connection limits (anvil); the zero
	// value enforces none.
	Limits Limits
	// ProxyProtocol is smtpd_upstream_proxy_protocol: "" (off) or
	// "haproxy" (PROXY protocol v1 and v2).
	ProxyProtocol string
	// ProxyTimeout is smtpd_upstream_proxy_timeout (5s when zero).
	ProxyTimeout time.Duration
	// Service names the listener in warnings ("for service smtp"), as
	// the master.cf service name does in Postfix's.
	Service string
	// PeerName, when set, returns the client's verified hostname (or
	// "unknown") for hostname patterns in
	// smtpd_client_event_limit_exceptions and for log lines. Without it
	// those patterns see "unknown".
	PeerName func(ctx context.Context, ip netip.Addr) string
	// Logger receives Postfix-style log lines for refused connections;
	// nil discards them.
	Logger *slog.Logger

	now func() time.Time // tests: the anvil's clock
}

// ListenerConfigFrom reads a ListenerConfig from main.cf: the anvil limits
// (LimitsFrom), smtpd_upstream_proxy_protocol and
// smtpd_upstream_proxy_timeout. Service is "smtp".
func ListenerConfigFrom(c *config.Config) (ListenerConfig, error) {
	lim, err := LimitsFrom(c)
	if err != nil {
		return ListenerConfig{}, err
	}
	cfg := ListenerConfig{Hostname: lim.Hostname, Limits: lim, Service: "smtp"}
	cfg.ProxyProtocol = c.Get("smtpd_upstream_proxy_protocol")
	if cfg.ProxyTimeout, err = c.Duration("smtpd_upstream_proxy_timeout"); err != nil {
		return ListenerConfig{}, fmt.Errorf("smtpserver: %w", err)
	}
	return cfg, nil
}

// Listener is the connect stage of an SMTP server, wrapped around a TCP
// (or unix) listener and below TLS: it decodes PROXY headers when enabled,
// enforces the per-client connection count and rate limits (refused
// clients get Postfix's 421 and are closed, and Accept goes on), and backs
// off on temporary accept errors such as EMFILE. Every conn it returns is
// a PeerConn. For implicit TLS (port 465) wrap it:
// tls.NewListener(l, cfg); the TLS layer must be above it, never below
// (../shared/docs/go-libraries.md §1.7).
type Listener struct {
	inner   net.Listener
	cfg     ListenerConfig
	anvil   *anvil // nil when no limit is on
	log     *slog.Logger
	async   bool
	ready   chan acceptResult
	start   sync.Once
	done    chan struct{}
	closeMu sync.Once
	closed  atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
}

type acceptResult struct {
	c   net.Conn
	err error
}

// NewListener wraps inner.
func NewListener(inner net.Listener, cfg ListenerConfig) (*Listener, error) {
	switch cfg.ProxyProtocol {
	case "", "haproxy":
	default:
		return nil, fmt.Errorf("smtpserver: smtpd_upstream_proxy_protocol = %s: want \"haproxy\" or empty", cfg.ProxyProtocol)
	}
	if cfg.ProxyTimeout <= 0 {
		cfg.ProxyTimeout = 5 * time.Second
	}
	if cfg.Service == "" {
		cfg.Service = "smtp"
	}
	if cfg.Limits.Hostname == "" {
		cfg.Limits.Hostname = cfg.Hostname
	}
	l := &Listener{inner: inner, cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits.enabled() {
		a, err := newAnvil(cfg.Limits, cfg.now)
		if err != nil {
			return nil, err
		}
		l.anvil = a
	}
	// A PROXY header or a name lookup may take seconds: those happen in a
	// goroutine per connection, so one slow client never holds up Accept.
	l.async = cfg.ProxyProtocol != "" || cfg.PeerName != nil
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting; connections already returned stay open.
// Connections still in the connect stage are closed.
func (l *Listener) Close() error {
	var err error
	l.closeMu.Do(func() {
		l.closed.Store(true)
		close(l.done)
		l.cancel()
		err = l.inner.Close()
	})
	return err
}

// Accept returns the next admitted connection, a PeerConn.
func (l *Listener) Accept() (net.Conn, error) {
	if l.async {
		l.start.Do(func() {
			l.ready = make(chan acceptResult)
			go l.acceptLoop()
		})
		select {
		case r := <-l.ready:
			return r.c, r.err
		case <-l.done:
			return nil, fmt.Errorf("smtpserver: accept: %w", net.ErrClosed)
		}
	}
	for {
		c, err := l.acceptRaw()
		if err != nil {
			return nil, err
		}
		if pc := l.admit(c, nil); pc != nil {
			return pc, nil
		}
	}
}

// acceptLoop feeds l.ready in async mode.
func (l *Listener) acceptLoop() {
	for {
		c, err := l.acceptRaw()
		if err != nil {
			select {
			case l.ready <- acceptResult{err: err}:
			case <-l.done:
			}
			return
		}
		go func() {
			var hdr *ProxyHeader
			if l.cfg.ProxyProtocol != "" {
				rc, h, err := ReadProxyHeader(l.ctx, c, l.cfg.ProxyTimeout)
				if err != nil {
					l.proxyFailed(c, err)
					return
				}
				c, hdr = rc, &h
			}
			pc := l.admit(c, hdr)
			if pc == nil {
				return
			}
			select {
			case l.ready <- acceptResult{c: pc}:
			case <-l.done:
				pc.Close()
			}
		}()
	}
}

// proxyFailed ends a connection whose PROXY header could not be read as
// Postfix 3.7's smtpd does (checked against it): a warning, the connect
// and disconnect lines for the proxy's own address, and a 421 to the
// client.
func (l *Listener) proxyFailed(c net.Conn, err error) {
	namaddr := "unknown[" + clientAddr(addrPortOf(c.RemoteAddr()).Addr()).String() + "]"
	l.log.Warn(fmt.Sprintf("haproxy read: %v", err))
	l.log.Info("connect from " + namaddr)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("421 4.3.0 " + l.cfg.Hostname + " Server local error\r\n"))
	c.Close()
	l.log.Info("disconnect from " + namaddr + " commands=0/0")
}

// acceptRaw accepts from inner, sleeping and retrying after temporary
// errors (descriptor exhaustion, aborted handshakes) as Postfix's master
// and Go's http.Server do, instead of ending the server.
func (l *Listener) acceptRaw() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err == nil {
			return c, nil
		}
		if l.closed.Load() || errors.Is(err, net.ErrClosed) || !temporaryAcceptError(err) {
			return nil, err
		}
		if delay == 0 {
			delay = 5 * time.Millisecond
		} else if delay *= 2; delay > time.Second {
			delay = time.Second
		}
		l.log.Warn(fmt.Sprintf("accept: %v; retrying in %v", err, delay))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, err
		}
	}
}

func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// admit applies the connection limits to c; it returns nil when the
// client was refused (the 421 is sent and c closed in the background).
func (l *Listener) admit(c net.Conn, hdr *ProxyHeader) *peerConn {
	pc := &peerConn{Conn: c, service: l.cfg.Service}
	pc.peer = addrPortOf(c.RemoteAddr())
	pc.local = addrPortOf(c.LocalAddr())
	if hdr != nil && !hdr.Local {
		pc.peer, pc.local, pc.proxied = hdr.Source, hdr.Dest, true
	}
	if l.anvil == nil || !pc.peer.IsValid() {
		return pc
	}
	ip := clientAddr(pc.peer.Addr())
	name := "unknown"
	if l.cfg.PeerName != nil {
		name = l.cfg.PeerName(l.ctx, ip)
	}
	exempt := l.anvil.exempt(l.ctx, l.log, name, ip)
	pc.limits = &ClientLimits{a: l.anvil, ip: ip, exempt: exempt, log: l.log, service: l.cfg.Service}
	if exempt {
		return pc
	}
	release, reply, warn, ok := l.anvil.connectWarn(ip)
	pc.release = release
	if ok {
		return pc
	}
	namaddr := name + "[" + ip.String() + "]"
	// Postfix's smtpd logs the connect, the warning, and a disconnect
	// with no commands; the client sees only the 421 (smtpd.c
	// smtpd_proto).
	l.log.Info("connect from " + namaddr)
	l.log.Warn(fmt.Sprintf("%s from %s for service %s", warn, namaddr, l.cfg.Service))
	go func() {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(reply + "\r\n"))
		// The slot is free before the client sees the close.
		release()
		c.Close()
		l.log.Info("disconnect from " + namaddr + " commands=0/0")
	}()
	return nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case interface{ AddrPort() netip.AddrPort }:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// PeerConn is a connection from a Listener. The addresses are the real
// client's and server's (from the PROXY header when one was used).
type PeerConn interface {
	net.Conn
	// Peer is the client's address; invalid for a unix-socket client.
	Peer() netip.AddrPort
	// Local is the address the client connected to.
	Local() netip.AddrPort
	// Limits are the per-client rate limits for the session's MAIL,
	// RCPT and AUTH commands (nil: none).
	Limits() *ClientLimits
	// Release gives back the connection-count slot early; Close calls
	// it too. Calling it more than once is harmless.
	Release()
}

type peerConn struct {
	net.Conn
	peer, local netip.AddrPort
	proxied     bool
	service     string
	limits      *ClientLimits
	release     func()
}

func (c *peerConn) Peer() netip.AddrPort  { return c.peer }
func (c *peerConn) Local() netip.AddrPort { return c.local }
func (c *peerConn) Limits() *ClientLimits { return c.limits }
func (c *peerConn) Release() {
	if c.release != nil {
		c.release()
	}
}

func (c *peerConn) Close() error {
	c.Release()
	return c.Conn.Close()
}

// RemoteAddr is the real client's address, also behind a proxy.
func (c *peerConn) RemoteAddr() net.Addr {
	if c.proxied {
		return net.TCPAddrFromAddrPort(c.peer)
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to, also behind a proxy.
func (c *peerConn) LocalAddr() net.Addr {
	if c.proxied {
		return net.TCPAddrFromAddrPort(c.local)
	}
	return c.Conn.LocalAddr()
}

// NetConn returns the underlying conn.
func (c *peerConn) NetConn() net.Conn { return c.Conn }

// peerOf finds the PeerConn under c: c itself, or below *tls.Conn and
// other wrappers that expose NetConn.
func peerOf(c net.Conn) (PeerConn, bool) {
	for i := 0; i < 8 && c != nil; i++ {
		if pc, ok := c.(PeerConn); ok {
			return pc, true
		}
		switch w := c.(type) {
		case *tls.Conn:
			c = w.NetConn()
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}
