package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/mailbox"
)

// session is one connection's state: go-imap calls it for every command.
type session struct {
	s       *Server
	conn    *goimapserver.Conn
	cc      *countConn // nil if the listener was not ours
	id      string
	ctx     context.Context
	cancel  context.CancelFunc
	user    string
	method  string
	store   *mailbox.Store
	uid     int // the user's, for the files of shared boxes
	gid     int
	sel     *selected
	fails   int
	started time.Time

	lastUser, lastMethod string // for the auth-failed log line
}

var (
	_ goimapserver.SessionIMAP4rev2      = (*session)(nil)
	_ goimapserver.SessionSASL           = (*session)(nil)
	_ goimapserver.SessionAppendLimit    = (*session)(nil)
	_ goimapserver.SessionUnauthenticate = (*session)(nil)
)

func (s *Server) newSession(c *goimapserver.Conn) (goimapserver.Session, *goimapserver.GreetingData, error) {
	cc, _ := baseConn(c.NetConn())
	ctx, cancel := context.WithCancel(context.Background())
	return &session{s: s, conn: c, cc: cc, id: newSessionID(), ctx: ctx, cancel: cancel, started: time.Now()}, nil, nil
}

func (se *session) secured() bool {
	_, ok := se.conn.NetConn().(*tls.Conn)
	return ok
}

func (se *session) clientInfo() auth.ClientInfo {
	nc := se.conn.NetConn()
	return auth.ClientInfo{
		Service:    "imap",
		LocalAddr:  addrOf(nc.LocalAddr()),
		RemoteAddr: addrOf(nc.RemoteAddr()),
		Secured:    se.secured(),
		Session:    se.id,
	}
}

func (se *session) authCtx() context.Context {
	return auth.WithClientInfo(se.ctx, se.clientInfo())
}

func (se *session) loginSuffix(user, method string) string {
	ci := se.clientInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "user=<%s>, method=%s, rip=%s, lip=%s", user, method, ci.RemoteAddr.Addr(), ci.LocalAddr.Addr())
	if se.user != "" {
		fmt.Fprintf(&b, ", mpid=%d", se.s.pid)
	}
	if ci.Secured {
		b.WriteString(", TLS")
	}
	fmt.Fprintf(&b, ", session=<%s>", se.id)
	return b.String()
}

// Close ends the session (the connection is gone).
func (se *session) Close() error {
	se.unselect()
	se.cancel()
	if se.user != "" {
		var in, out int64
		reason := "Connection closed"
		if se.cc != nil {
			in, out = se.cc.in.Load(), se.cc.out.Load()
			if se.cc.sawLogout() {
				reason = "Logged out"
			}
		}
		se.s.log.Info(fmt.Sprintf("imap(%s)<%d><%s>: Disconnected: %s in=%d out=%d", se.user, se.s.pid, se.id, reason, in, out))
	} else if se.fails > 0 {
		se.s.log.Info(fmt.Sprintf("imap-login: Disconnected (auth failed, %d attempts in %d secs): %s",
			se.fails, int(time.Since(se.started).Seconds()), se.loginSuffix(se.lastUser, se.lastMethod)))
	}
	return nil
}

var errTemp = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Temporary authentication failure"}

// Login is IMAP LOGIN.
func (se *session) Login(username, password string) error {
	se.lastUser, se.lastMethod = username, "PLAIN"
	u, err := se.s.opts.Auth.Verify(se.authCtx(), username, password)
	if err != nil {
		return se.authFailed(err)
	}
	return se.loggedIn(u.Name, "PLAIN")
}

func (se *session) authFailed(err error) error {
	if errors.Is(err, auth.ErrTemporary) {
		se.s.log.Warn(fmt.Sprintf("imap-login: Temporary authentication failure: %v, %s", err, se.loginSuffix(se.lastUser, se.lastMethod)))
		return errTemp
	}
	se.fails++
	return goimapserver.ErrAuthFailed
}

// loggedIn opens the user's store after a successful authentication.
func (se *session) loggedIn(user, method string) error {
	ctx := se.authCtx()
	u, err := se.s.opts.Auth.LookupUser(ctx, user)
	if err != nil {
		se.s.log.Warn(fmt.Sprintf("imap(%s)<%d><%s>: user lookup failed: %v", user, se.s.pid, se.id, err))
		return errTemp
	}
	root, err := se.s.mailRoot(ctx, u)
	if err != nil {
		se.s.log.Warn(fmt.Sprintf("imap(%s)<%d><%s>: %v", user, se.s.pid, se.id, err))
		return errTemp
	}
	if !se.s.claimUser(se.cc, user) {
		se.s.log.Info(fmt.Sprintf("imap-login: Maximum number of connections from user+IP exceeded (mail_max_userip_connections=%d): %s",
			se.s.opts.MaxUserIPConnections, se.loginSuffix(user, method)))
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("Maximum number of connections from user+IP exceeded (mail_max_userip_connections=%d)", se.s.opts.MaxUserIPConnections)}
	}
	st, err := mailbox.OpenStore(root, mailbox.StoreOptions{Create: true, Hub: se.s.hub, Hostname: se.s.opts.Hostname, UID: u.UID, GID: u.GID})
	if err == nil && !se.s.opts.DisableSpecialFolders {
		err = st.CreateSpecialFolders()
	}
	if err != nil {
		se.s.log.Error(fmt.Sprintf("imap(%s)<%d><%s>: open mail store: %v", user, se.s.pid, se.id, err))
		return errTemp
	}
	se.store, se.user, se.method, se.uid, se.gid = st, user, method, u.UID, u.GID
	se.s.log.Info("imap-login: Login: " + se.loginSuffix(user, method))
	return nil
}

// mailRoot finds the user's Maildir++ root: Options.MailRoot, else
// auth.MaildirPath (the POP3 server's default too).
func (s *Server) mailRoot(ctx context.Context, u auth.User) (string, error) {
	if s.opts.MailRoot != nil {
		return s.opts.MailRoot(ctx, u)
	}
	return auth.MaildirPath(u)
}

// AuthenticateMechanisms lists the SASL mechanisms (auth_mechanisms).
func (se *session) AuthenticateMechanisms() []string {
	return se.s.opts.Auth.Mechanisms(auth.SecurityOptions{})
}

// Authenticate starts a SASL exchange through package auth.
func (se *session) Authenticate(mech string) (sasl.Server, error) {
	allowed := false
	for _, m := range se.AuthenticateMechanisms() {
		if strings.EqualFold(m, mech) {
			allowed = true
		}
	}
	if !allowed {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	m, err := se.s.opts.Auth.NewMech(mech)
	if err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	se.lastMethod = strings.ToUpper(mech)
	return &saslAdapter{se: se, mech: m, name: strings.ToUpper(mech)}, nil
}

type saslAdapter struct {
	se   *session
	mech auth.ServerMech
	name string
}

func (a *saslAdapter) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := a.mech.Next(a.se.authCtx(), resp)
	if err != nil {
		if u := a.mech.User(); u != "" {
			a.se.lastUser = u
		}
		if errors.Is(err, auth.ErrMechanism) {
			a.se.fails++
			return nil, false, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid authentication exchange"}
		}
		return nil, false, a.se.authFailed(err)
	}
	if !done {
		return ch, false, nil
	}
	a.se.lastUser = a.mech.User()
	if err := a.se.loggedIn(a.mech.User(), a.name); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

// Unauthenticate (UNAUTHENTICATE) returns to the not-authenticated state.
func (se *session) Unauthenticate() error {
	se.unselect()
	se.user, se.store = "", nil
	return nil
}

// AppendLimit implements APPENDLIMIT.
func (se *session) AppendLimit() uint32 { return se.s.opts.AppendLimit }

// Namespace: one personal namespace, separator '.' (Maildir++).
func (se *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: mailbox.Separator}}}, nil
}

// storeName converts a client's mailbox name (UTF-8 from go-imap) to the
// store's (modified UTF-7) and checks it.
func storeName(name string) (string, error) {
	if strings.EqualFold(name, "INBOX") {
		return mailbox.Inbox, nil
	}
	n := encodeUTF7(name)
	if err := mailbox.ValidFolderName(n); err != nil {
		return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	}
	return n, nil
}

// clientName converts a store name back to what go-imap encodes.
func clientName(n string) string {
	if n == mailbox.Inbox {
		return n
	}
	if d, err := decodeUTF7(n); err == nil {
		return d
	}
	return n
}

func noMailbox() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "Mailbox doesn't exist"}
}

// mapErr turns mailbox errors into IMAP answers; other errors are logged
// and reported as a server error without detail.
func (se *session) mapErr(err error) error {
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, mailbox.ErrNoFolder), errors.Is(err, os.ErrNotExist):
		return noMailbox()
	case errors.Is(err, mailbox.ErrExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, mailbox.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, mailbox.ErrTooManyKeywords):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Too many keywords in this mailbox"}
	case errors.Is(err, mailbox.ErrTooLarge):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	case errors.Is(err, mailbox.ErrNoMessage):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeExpungeIssued, Text: "Some of the requested messages no longer exist"}
	}
	se.s.log.Error(fmt.Sprintf("imap(%s)<%d><%s>: %v", se.user, se.s.pid, se.id, err))
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error occurred. Refer to server log for more information."}
}
