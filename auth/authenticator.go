package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// PasswordChecker is implemented by a PassDB that checks passwords itself
// instead of handing out the stored ones (an LDAP bind, a remote
// authentication server). The Authenticator calls it for Verify, PLAIN
// and LOGIN; such a database cannot serve CRAM-MD5 or SCRAM, and its
// LookupCredentials should fail with an error wrapping ErrMechanism.
type PasswordChecker interface {
	CheckPassword(ctx context.Context, user, password string) (Credentials, error)
}

// SchemeLister is implemented by a PassDB that knows which password
// schemes its users' passwords are stored in (upper case, without an
// encoding suffix, e.g. "SHA512-CRYPT"); nil means it cannot tell. The
// Authenticator offers CRAM-MD5 and SCRAM-SHA-256 by default only when
// every user's password can serve them.
type SchemeLister interface {
	PasswordSchemes() []string
}

// ClientInfo describes the connection an authentication comes from. Put
// it in the context with WithClientInfo: it feeds the %s, %r, %l, %c...
// variables of the databases' queries and the allow_nets extra field.
type ClientInfo struct {
	Service    string         // "smtp", "submission", "imap", "pop3"
	LocalAddr  netip.AddrPort // the server's address, if known
	RemoteAddr netip.AddrPort // the client's address, if known
	Secured    bool           // TLS, or a connection from the host itself
	Session    string         // an ID for the logs
}

type clientInfoKey struct{}

// WithClientInfo returns a context carrying the connection's details.
func WithClientInfo(ctx context.Context, info ClientInfo) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, info)
}

// ClientInfoFrom returns the details WithClientInfo stored.
func ClientInfoFrom(ctx context.Context) (ClientInfo, bool) {
	info, ok := ctx.Value(clientInfoKey{}).(ClientInfo)
	return info, ok
}

// DefaultUsernameChars is Dovecot's auth_username_chars: the characters a
// user name may contain unless Authenticator.UsernameChars says otherwise.
// Refusing the rest keeps quoting trouble away from the databases.
const DefaultUsernameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"

// AnyUsernameChars as Authenticator.UsernameChars allows every character
// (Dovecot's empty auth_username_chars), for UTF-8 user names.
const AnyUsernameChars = "*"

// maxUsernameLen bounds a user name (postkit's limit; Dovecot has none
// besides its line length).
const maxUsernameLen = 512

// Authenticator checks users against a PassDB, and runs the server side of
// the SASL mechanisms PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-256. The zero
// value with a PassDB works; it is safe for concurrent use and must not be
// copied after first use. Settings are named after Dovecot's
// (auth_mechanisms, auth_username_chars, ...).
//
// Passwords never appear in its logs or errors.
type Authenticator struct {
	// PassDB finds users' passwords. Required.
	PassDB PassDB
	// UserDB is used by LookupUser; nil means LookupUser fails.
	UserDB UserDB
	// DefaultScheme is the scheme of stored passwords returned without a
	// "{SCHEME}" prefix (DefaultPasswordScheme, CRYPT, when empty). The
	// databases in this package add their own default before returning.
	DefaultScheme string
	// AuthMechanisms lists the mechanisms to offer, in order (Dovecot's
	// auth_mechanisms). Nil means PLAIN and LOGIN, then CRAM-MD5 and
	// SCRAM-SHA-256 when the PassDB is a SchemeLister whose every password
	// can serve them (plaintext, or the mechanism's own stored secret).
	// Unknown names are ignored.
	AuthMechanisms []string
	// UsernameChars are the characters allowed in user names
	// (auth_username_chars): "" means DefaultUsernameChars,
	// AnyUsernameChars allows all.
	UsernameChars string
	// UsernameFormat rewrites user names before the lookup
	// (auth_username_format); "" means "%Lu", lower case, as in Dovecot.
	UsernameFormat string
	// DefaultRealm is appended as "@realm" to user names without an @
	// (auth_default_realm).
	DefaultRealm string
	// Hostname goes into CRAM-MD5 challenges; "" means os.Hostname().
	Hostname string
	// FailureDelay is how long a failed authentication waits before it
	// answers (auth_failure_delay): 0 means 2 s, a negative value none.
	// Temporary failures are not delayed, nor users whose passdb entry has
	// the "nodelay" extra field.
	FailureDelay time.Duration
	// Sleep waits for the failure delay; nil means a timer that gives up
	// when ctx ends. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Authorize decides whether authcid may act as authzid when a client
	// asks for a different authorization identity (PLAIN, SCRAM). Nil
	// means it may not: authzid must be empty or authcid.
	Authorize func(ctx context.Context, authcid, authzid string) error
	// SCRAMIterations is the PBKDF2 iteration count used when SCRAM keys
	// are derived from a plaintext password; 0 means 4096 (RFC 7677).
	SCRAMIterations int
	// Logger gets one line per failed authentication; nil means
	// slog.Default().
	Logger *slog.Logger

	once      sync.Once
	fmt       *varTemplate
	fmtErr    error
	chars     [256]bool
	anyChars  bool
	fakeKey   []byte        // keys SCRAM's made-up salts for unknown users
	scramNonc func() string // test hook: the server nonce
}

func (a *Authenticator) init() {
	a.once.Do(func() {
		f := a.UsernameFormat
		if f == "" {
			f = "%Lu"
		}
		a.fmt, a.fmtErr = parseTemplate(f)
		switch a.UsernameChars {
		case AnyUsernameChars:
			a.anyChars = true
		case "":
			for i := 0; i < len(DefaultUsernameChars); i++ {
				a.chars[DefaultUsernameChars[i]] = true
			}
		default:
			for i := 0; i < len(a.UsernameChars); i++ {
				a.chars[a.UsernameChars[i]] = true
			}
		}
		a.fakeKey = make([]byte, 32)
		rand.Read(a.fakeKey)
	})
}

func (a *Authenticator) log() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// normalize checks a user name and applies DefaultRealm and
// UsernameFormat (Dovecot's auth_request_fix_username).
func (a *Authenticator) normalize(ctx context.Context, name string) (string, error) {
	a.init()
	if a.fmtErr != nil {
		return "", fmt.Errorf("auth: UsernameFormat: %w", a.fmtErr)
	}
	if name == "" {
		return "", fmt.Errorf("auth: empty user name: %w", ErrUnknownUser)
	}
	if len(name) > maxUsernameLen || !utf8.ValidString(name) {
		return "", fmt.Errorf("auth: user name is too long or not UTF-8: %w", ErrUnknownUser)
	}
	if a.DefaultRealm != "" && !strings.Contains(name, "@") {
		name += "@" + a.DefaultRealm
	}
	if !a.anyChars {
		for i := 0; i < len(name); i++ {
			if !a.chars[name[i]] {
				return "", fmt.Errorf("auth: user name character 0x%02x is not allowed by UsernameChars: %w", name[i], ErrUnknownUser)
			}
		}
	} else if strings.ContainsAny(name, "\x00\r\n\t") {
		return "", fmt.Errorf("auth: user name holds a control character: %w", ErrUnknownUser)
	}
	info, _ := ClientInfoFrom(ctx)
	out := a.fmt.expand(&varValues{user: name, info: info}, nil)
	if out == "" {
		return "", fmt.Errorf("auth: user name is empty after UsernameFormat: %w", ErrUnknownUser)
	}
	return out, nil
}

// Verify checks a user's password (for plaintext logins outside SASL, and
// behind PLAIN and LOGIN). It returns the user with the canonical name
// the database gave and the passdb's extra fields. Errors wrap
// ErrUnknownUser, ErrBadPassword, ErrTemporary or ErrMechanism; failures
// other than temporary ones are delayed by FailureDelay.
func (a *Authenticator) Verify(ctx context.Context, user, password string) (User, error) {
	u, _, err := a.verifyPlain(ctx, "", user, password)
	return u, err
}

// verifyPlain is Verify for a mechanism; it applies the failure delay.
func (a *Authenticator) verifyPlain(ctx context.Context, mech, user, password string) (User, *Credentials, error) {
	name, err := a.normalize(ctx, user)
	if err != nil {
		return User{}, nil, a.failed(ctx, mech, user, nil, err)
	}
	if strings.IndexByte(password, 0) >= 0 {
		// No stored password can hold a NUL (Dovecot passes C strings).
		return User{}, nil, a.failed(ctx, mech, name, nil, fmt.Errorf("auth: user %q: password holds a NUL: %w", name, ErrBadPassword))
	}
	var creds Credentials
	if a.PassDB == nil {
		return User{}, nil, a.failed(ctx, mech, name, nil, errNoPassDB)
	}
	if pc, ok := a.PassDB.(PasswordChecker); ok {
		creds, err = pc.CheckPassword(ctx, name, password)
		if err != nil {
			return User{}, nil, a.failed(ctx, mech, name, nil, err)
		}
	} else {
		creds, err = a.PassDB.LookupCredentials(ctx, name)
		if err != nil {
			return User{}, nil, a.failed(ctx, mech, name, nil, err)
		}
		if err := a.checkPassword(name, &creds, password); err != nil {
			return User{}, nil, a.failed(ctx, mech, name, &creds, err)
		}
	}
	if err := a.checkExtra(ctx, name, &creds); err != nil {
		return User{}, nil, a.failed(ctx, mech, name, &creds, err)
	}
	return a.user(name, &creds), &creds, nil
}

// errNoPassDB is returned by an Authenticator without a PassDB.
var errNoPassDB = fmt.Errorf("auth: the Authenticator has no PassDB: %w", ErrTemporary)

// lookup asks the PassDB for a user's stored credentials.
func (a *Authenticator) lookup(ctx context.Context, name string) (Credentials, error) {
	if a.PassDB == nil {
		return Credentials{}, errNoPassDB
	}
	return a.PassDB.LookupCredentials(ctx, name)
}

// checkPassword compares a password with the stored one, honouring the
// nopassword extra field.
func (a *Authenticator) checkPassword(name string, creds *Credentials, password string) error {
	if _, ok := creds.Extra["nopassword"]; ok && creds.Password == "" {
		// Dovecot: "nopassword" with no stored password accepts any.
		return nil
	}
	if creds.Password == "" {
		return fmt.Errorf("auth: user %q has no password in the passdb: %w", name, ErrBadPassword)
	}
	ok, err := VerifyPassword(creds.Password, password, a.DefaultScheme)
	if err != nil {
		return fmt.Errorf("auth: user %q: %w: %w", name, ErrMechanism, err)
	}
	if !ok {
		return fmt.Errorf("auth: user %q: password mismatch: %w", name, ErrBadPassword)
	}
	return nil
}

// checkExtra applies the passdb extra fields that refuse a login whose
// credentials were right: nologin (with its reason) and allow_nets.
func (a *Authenticator) checkExtra(ctx context.Context, name string, creds *Credentials) error {
	if _, ok := creds.Extra["nologin"]; ok {
		reason := creds.Extra["reason"]
		if reason == "" {
			reason = "login disabled"
		}
		return fmt.Errorf("auth: user %q: nologin: %s: %w", name, reason, ErrBadPassword)
	}
	if nets, ok := creds.Extra["allow_nets"]; ok {
		info, _ := ClientInfoFrom(ctx)
		if !allowNets(nets, info.RemoteAddr) {
			return fmt.Errorf("auth: user %q: allow_nets does not match the client's address: %w", name, ErrBadPassword)
		}
	}
	return nil
}

// allowNets checks Dovecot's allow_nets: addresses and networks separated
// by commas or spaces; "local" matches a connection without an address.
func allowNets(list string, remote netip.AddrPort) bool {
	for _, n := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
		if n == "local" {
			if !remote.IsValid() {
				return true
			}
			continue
		}
		if !remote.IsValid() {
			continue
		}
		addr := remote.Addr().Unmap()
		if p, err := netip.ParsePrefix(n); err == nil {
			if p.Masked().Contains(addr) {
				return true
			}
		} else if ip, err := netip.ParseAddr(n); err == nil && ip.Unmap() == addr {
			return true
		}
	}
	return false
}

// user builds the result of a successful authentication.
func (a *Authenticator) user(name string, creds *Credentials) User {
	u := User{Name: name, UID: -1, GID: -1, Extra: creds.Extra}
	if creds.User != "" {
		u.Name = creds.User
	}
	return u
}

// failed logs a failure, waits FailureDelay unless the failure is
// temporary or the user has "nodelay", and returns err.
func (a *Authenticator) failed(ctx context.Context, mech, user string, creds *Credentials, err error) error {
	info, _ := ClientInfoFrom(ctx)
	attrs := []any{"user", user, "error", err}
	if mech != "" {
		attrs = append(attrs, "mech", mech)
	}
	if info.RemoteAddr.IsValid() {
		attrs = append(attrs, "rip", info.RemoteAddr.Addr().String())
	}
	if info.Session != "" {
		attrs = append(attrs, "session", info.Session)
	}
	if info.Service != "" {
		attrs = append(attrs, "service", info.Service)
	}
	a.log().Info("auth: authentication failed", attrs...)
	if errors.Is(err, ErrTemporary) {
		return err
	}
	if creds != nil {
		if _, ok := creds.Extra["nodelay"]; ok {
			return err
		}
	}
	d := a.FailureDelay
	if d == 0 {
		d = 2 * time.Second
	}
	if d > 0 {
		sleep := a.Sleep
		if sleep == nil {
			sleep = sleepCtx
		}
		sleep(ctx, d)
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LookupUser normalizes the name as for authentication and asks the
// UserDB.
func (a *Authenticator) LookupUser(ctx context.Context, user string) (User, error) {
	name, err := a.normalize(ctx, user)
	if err != nil {
		return User{}, err
	}
	if a.UserDB == nil {
		return User{}, fmt.Errorf("auth: no userdb to look up %q in: %w", name, ErrUnknownUser)
	}
	return a.UserDB.LookupUser(ctx, name)
}

// authorize applies the authzid rule and returns the identity to log in
// as.
func (a *Authenticator) authorize(ctx context.Context, authcid, authzid string) (string, error) {
	if authzid == "" {
		return authcid, nil
	}
	z, err := a.normalize(ctx, authzid)
	if err != nil {
		return "", fmt.Errorf("auth: authorization identity: %w", err)
	}
	if z == authcid {
		return authcid, nil
	}
	if a.Authorize == nil {
		return "", fmt.Errorf("auth: %q may not log in as %q: %w", authcid, z, ErrBadPassword)
	}
	if err := a.Authorize(ctx, authcid, z); err != nil {
		return "", fmt.Errorf("auth: %q may not log in as %q: %w: %w", authcid, z, ErrBadPassword, err)
	}
	return z, nil
}

func (a *Authenticator) hostname() string {
	if a.Hostname != "" {
		return a.Hostname
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// ---- mechanisms and their security properties ----------------------------

// MechFlags are the security properties of a SASL mechanism, as Dovecot
// announces them to Postfix ("MECH PLAIN plaintext").
type MechFlags uint8

const (
	MechPlaintext      MechFlags = 1 << iota // the password crosses the wire
	MechDictionary                           // open to a passive dictionary attack
	MechActive                               // open to an active (non-dictionary) attack
	MechAnonymous                            // allows anonymous logins
	MechForwardSecrecy                       // provides forward secrecy
	MechMutualAuth                           // the server proves itself too
)

// Names returns the flags in Dovecot's words: "plaintext", "dictionary",
// "active", "anonymous", "forward-secrecy", "mutual-auth".
func (f MechFlags) Names() []string {
	var out []string
	for i, n := range []string{"plaintext", "dictionary", "active", "anonymous", "forward-secrecy", "mutual-auth"} {
		if f&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// mechFlags are Dovecot's flags for the mechanisms postkit implements.
var mechFlags = map[string]MechFlags{
	"PLAIN":         MechPlaintext,
	"LOGIN":         MechPlaintext,
	"CRAM-MD5":      MechDictionary | MechActive,
	"SCRAM-SHA-256": MechMutualAuth,
}

// MechanismFlags returns the security properties of a mechanism postkit
// implements.
func MechanismFlags(name string) (MechFlags, bool) {
	f, ok := mechFlags[strings.ToUpper(name)]
	return f, ok
}

// SecurityOptions are Postfix's smtpd_sasl_security_options (and
// smtpd_sasl_tls_security_options once TLS is on): which mechanisms may be
// offered.
type SecurityOptions struct {
	NoPlaintext    bool // noplaintext: no mechanism that sends the password
	NoActive       bool // noactive
	NoDictionary   bool // nodictionary
	NoAnonymous    bool // noanonymous (postkit offers no anonymous mechanism)
	MutualAuth     bool // mutual_auth: only mechanisms that authenticate the server
	ForwardSecrecy bool // forward_secrecy: only mechanisms with forward secrecy
}

// ParseSecurityOptions reads a Postfix value such as "noanonymous,
// noplaintext" (words separated by commas or white space).
func ParseSecurityOptions(s string) (SecurityOptions, error) {
	var o SecurityOptions
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		switch strings.ToLower(w) {
		case "noplaintext":
			o.NoPlaintext = true
		case "noactive":
			o.NoActive = true
		case "nodictionary":
			o.NoDictionary = true
		case "noanonymous":
			o.NoAnonymous = true
		case "mutual_auth":
			o.MutualAuth = true
		case "forward_secrecy":
			o.ForwardSecrecy = true
		default:
			return SecurityOptions{}, fmt.Errorf("auth: unknown SASL security option %q", w)
		}
	}
	return o, nil
}

// Allows reports whether a mechanism with these flags may be offered: it
// has none of the properties the options refuse and all they require.
func (o SecurityOptions) Allows(f MechFlags) bool {
	switch {
	case o.NoPlaintext && f&MechPlaintext != 0,
		o.NoActive && f&MechActive != 0,
		o.NoDictionary && f&MechDictionary != 0,
		o.NoAnonymous && f&MechAnonymous != 0,
		o.MutualAuth && f&MechMutualAuth == 0,
		o.ForwardSecrecy && f&MechForwardSecrecy == 0:
		return false
	}
	return true
}

// Schemes whose stored value serves each secret-based mechanism.
var (
	plaintextSchemes = []string{"PLAIN", "CLEAR", "CLEARTEXT"}
	cramSchemes      = append([]string{"CRAM-MD5", "HMAC-MD5"}, plaintextSchemes...)
	scramSchemes     = append([]string{"SCRAM-SHA-256"}, plaintextSchemes...)
)

// enabled returns the mechanisms configured or derived from the PassDB.
func (a *Authenticator) enabled() []string {
	if a.AuthMechanisms != nil {
		var out []string
		for _, m := range a.AuthMechanisms {
			m = strings.ToUpper(m)
			if _, ok := mechFlags[m]; ok && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
		return out
	}
	out := []string{"PLAIN", "LOGIN"}
	if _, checker := a.PassDB.(PasswordChecker); checker {
		return out
	}
	if sl, ok := a.PassDB.(SchemeLister); ok {
		schemes := sl.PasswordSchemes()
		all := func(allowed []string) bool {
			if len(schemes) == 0 {
				return false
			}
			for _, s := range schemes {
				if !slices.Contains(allowed, s) {
					return false
				}
			}
			return true
		}
		if all(cramSchemes) {
			out = append(out, "CRAM-MD5")
		}
		if all(scramSchemes) {
			out = append(out, "SCRAM-SHA-256")
		}
	}
	return out
}

// Mechanisms returns the mechanisms to offer under the security options,
// in order, for an EHLO "AUTH" line or an IMAP capability. A server must
// accept only these names, checking before NewMech.
func (a *Authenticator) Mechanisms(opts SecurityOptions) []string {
	var out []string
	for _, m := range a.enabled() {
		if opts.Allows(mechFlags[m]) {
			out = append(out, m)
		}
	}
	return out
}

// NewMech starts the server side of one SASL exchange with an enabled
// mechanism (name in any case). It does not apply SecurityOptions: offer
// and accept only what Mechanisms returned.
func (a *Authenticator) NewMech(name string) (ServerMech, error) {
	a.init()
	name = strings.ToUpper(name)
	if !slices.Contains(a.enabled(), name) {
		return nil, fmt.Errorf("auth: mechanism %q is not enabled: %w", name, ErrMechanism)
	}
	switch name {
	case "PLAIN":
		return &plainMech{mechState{a: a}}, nil
	case "LOGIN":
		return &loginMech{mechState: mechState{a: a}}, nil
	case "CRAM-MD5":
		return &cramMech{mechState: mechState{a: a}}, nil
	case "SCRAM-SHA-256":
		return newSCRAMMech(a), nil
	}
	return nil, fmt.Errorf("auth: mechanism %q is not implemented: %w", name, ErrMechanism)
}
