package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/imapserver"
	"github.com/postkit-mail/postkit/mailbox"
	"github.com/postkit-mail/postkit/pop3server"
	"github.com/postkit-mail/postkit/smtpserver"
)

// Mail access: IMAP and POP3 (Dovecot's part of a mail system) over the
// Maildirs the local agent delivers to.
//
// The servers are built once, at start, and read what a reload may
// change through the current generation: the users (the passwd-file,
// as SMTP AUTH and local delivery see it; auth also rereads it whenever
// it changes), the certificate and home_mailbox. Both use mailbox.DefaultHub, the hub mailbox.DeliverMaildir
// notifies when the local agent leaves MaildirOptions.Hub nil, so an
// IMAP client in IDLE hears of a delivery at once.

// accessListener is one IMAP or POP3 listener.
type accessListener struct {
	name     string // imap, imaps, pop3, pop3s
	addr     string // flag value
	implicit bool   // TLS from the first byte
	pop3     bool
}

func (s *server) accessListeners() []accessListener {
	return []accessListener{
		{name: "imap", addr: s.opts.imap},
		{name: "imaps", addr: s.opts.imaps, implicit: true},
		{name: "pop3", addr: s.opts.pop3, pop3: true},
		{name: "pop3s", addr: s.opts.pop3s, implicit: true, pop3: true},
	}
}

// accessOn says whether any IMAP or POP3 listener is configured.
func (o options) accessOn() bool {
	return o.imap != "" || o.imaps != "" || o.pop3 != "" || o.pop3s != ""
}

// accessTLSConfig is the TLS configuration of IMAP and POP3: the SMTP
// server's certificate and mandatory protocol versions and ciphers (as
// for submissions), without client certificates.
func accessTLSConfig(cfg *config.Config) (*tls.Config, error) {
	c, _, err := smtpserver.TLSConfigFrom(cfg, smtpserver.RoleSubmissions)
	if err != nil {
		return nil, fmt.Errorf("IMAP and POP3 TLS: %w", err)
	}
	return &tls.Config{Certificates: c.Certificates, MinVersion: c.MinVersion, MaxVersion: c.MaxVersion,
		CipherSuites: c.CipherSuites}, nil
}

// liveUsers is the passwd-file of the current generation, so that a
// reload's users reach the IMAP and POP3 servers built at start.
type liveUsers struct{ s *server }

func (l liveUsers) LookupCredentials(ctx context.Context, user string) (auth.Credentials, error) {
	return l.s.gen.Load().users.LookupCredentials(ctx, user)
}

func (l liveUsers) LookupUser(ctx context.Context, user string) (auth.User, error) {
	return l.s.gen.Load().users.LookupUser(ctx, user)
}

func (l liveUsers) PasswordSchemes() []string { return l.s.gen.Load().users.PasswordSchemes() }

// mailRoot finds a user's Maildir where the local agent delivers: the
// userdb's mail field when set ("maildir:~/Maildir", Dovecot's
// mail_location), else HOME/home_mailbox when home_mailbox names a
// Maildir (ends in '/'; the built-in main.cf says "Maildir/"), else
// HOME/Maildir.
func (s *server) mailRoot(ctx context.Context, u auth.User) (string, error) {
	if u.Mail == "" {
		hm := s.gen.Load().homeMailbox
		if strings.HasSuffix(hm, "/") && !filepath.IsAbs(hm) && filepath.IsLocal(strings.TrimSuffix(hm, "/")) {
			u.Mail = "maildir:~/" + strings.TrimSuffix(hm, "/")
		}
	}
	return auth.MaildirPath(u)
}

// startAccess builds the IMAP and POP3 servers and opens their listeners.
func (s *server) startAccess() error {
	if !s.opts.accessOn() {
		return nil
	}
	dlog := s.ml.dovecot()
	authn := &auth.Authenticator{PassDB: liveUsers{s}, UserDB: liveUsers{s}, Logger: s.ml.dovecotWarnings()}
	tlsConf := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return s.gen.Load().accessTLS, nil
	}}
	var err error
	s.imap, err = imapserver.New(imapserver.Options{Auth: authn, TLSConfig: tlsConf, Hub: mailbox.DefaultHub,
		Logger: dlog, MailRoot: s.mailRoot})
	if err != nil {
		return err
	}
	s.pop3 = &pop3server.Server{Auth: authn, TLSConfig: tlsConf, Hub: mailbox.DefaultHub, Logger: dlog,
		MailboxPath: s.mailRoot, Implementation: "postkit"}
	for _, l := range s.accessListeners() {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		fmt.Fprintf(s.out, "listening %s %s\n", l.name, ln.Addr())
		s.accessWG.Add(1)
		go func() {
			defer s.accessWG.Done()
			var err error
			switch {
			case l.pop3 && l.implicit:
				err = s.pop3.ServeTLS(ln)
			case l.pop3:
				err = s.pop3.Serve(ln)
			case l.implicit:
				err = s.imap.ServeTLS(ln)
			default:
				err = s.imap.Serve(ln)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, pop3server.ErrServerClosed) {
				s.log.Error(fmt.Sprintf("%s listener %s: %v", l.name, ln.Addr(), err))
			}
		}()
	}
	return nil
}

// accessGrace is how long SIGTERM lets IMAP clients log out before their
// connections are cut. Sessions are long (IDLE), so it does not wait for
// the drain timeout; nothing is lost by the cut: Maildir writes are
// atomic and a POP3 session without QUIT deletes nothing.
const accessGrace = time.Second

// stopAccess stops the IMAP and POP3 servers: listeners closed, IMAP
// sessions given accessGrace to end, then every connection cut.
func (s *server) stopAccess(ctx context.Context) {
	if s.imap != nil {
		gctx, cancel := context.WithTimeout(ctx, accessGrace)
		s.imap.Shutdown(gctx)
		cancel()
		s.imap.Close()
	}
	if s.pop3 != nil {
		s.pop3.Close()
	}
	s.accessWG.Wait()
}
