package cleanup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/dkim"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/milter"
)

// MilterConfig holds the milters run on each message: SMTPD for mail from
// the SMTP server (smtpd_milters), NonSMTPD for local submission
// (non_smtpd_milters). milter_default_action and the timeouts are in each
// milter.Config.
//
// Postfix talks to smtpd_milters during the SMTP dialogue; postkit runs
// them once the message is complete, over the content as cleanup wrote it
// (header checks and header rewriting done), before the queue file is
// committed, and applies their verdict and changes then. So that the
// changes can be applied, the content is spooled to a temporary file
// (Config.TempDir) before it goes to the Store whenever milters or DKIM
// are configured.
type MilterConfig struct {
	SMTPD    *milter.Config
	NonSMTPD *milter.Config
}

// DKIMConfig configures DKIM (package dkim). Signer signs mail from
// local submission and from SignClients; Verifier checks the signatures
// of all other mail and prepends an Authentication-Results header with
// the result. Either may be nil.
type DKIMConfig struct {
	Signer   *dkim.Signer
	Verifier *dkim.Verifier
	// SignClients are the SMTP clients whose mail is signed rather than
	// verified (postkit_dkim_signing_clients, same syntax as
	// local_header_rewrite_clients). Nil: only local submission is
	// signed.
	SignClients *HeaderRewriteClients
}

// milters returns the milter list for this message, or nil.
func (m *Message) milters() *milter.Config {
	mc := m.c.cfg.Milters
	if mc == nil || m.c.cfg.NoMilters {
		return nil
	}
	l := mc.SMTPD
	if m.in.Local {
		l = mc.NonSMTPD
	}
	if l == nil || len(l.Milters) == 0 {
		return nil
	}
	return l
}

// runMilters sends the spooled content through the milters and applies
// their decision: a reject gives a *RejectError, a discard drops the
// message, a quarantine holds it, and their envelope and content changes
// are applied. It returns the content to queue.
func (m *Message) runMilters(ctx context.Context, mc *milter.Config, env *Envelope, r io.ReadSeeker) (io.ReadSeeker, spoolResult, error) {
	var res spoolResult
	ci := m.in.Client
	menv := milter.Envelope{
		ClientName: ci.Name, ClientAddr: ci.Addr, ClientPort: ci.Port, Helo: ci.Helo,
		Sender: m.in.Sender, QueueID: m.id,
		// The Received: header the SMTP server or pickup added is not
		// shown to the milters, as in Postfix (which hides its own
		// "Received: by ... (Postfix, from userid N)" from them too).
		SkipFirstHeader: true,
		Local:           m.in.Local,
		Macros:          map[string]string{},
	}
	if ci.SASLMethod != "" {
		menv.Macros["{auth_type}"] = ci.SASLMethod
		menv.Macros["{auth_authen}"] = ci.SASLUsername
		if ci.SASLSender != "" {
			menv.Macros["{auth_author}"] = ci.SASLSender
		}
	}
	for _, rc := range m.recipients() {
		menv.Recipients = append(menv.Recipients, rc.Addr)
		var args []string
		if len(rc.Notify) > 0 {
			args = append(args, "NOTIFY="+strings.Join(rc.Notify, ","))
		}
		if rc.ORCPT != "" {
			args = append(args, "ORCPT="+rc.ORCPT)
		}
		menv.RecipientArgs = append(menv.RecipientArgs, args)
	}
	out, err := mc.Run(ctx, menv, r)
	if err != nil {
		return nil, res, fmt.Errorf("cleanup: %s: milters: %w", m.id, err)
	}
	what := func(stage string) string {
		if stage == "" {
			stage = "END-OF-MESSAGE"
		}
		return stage + " from " + m.clientLog()
	}
	tail := m.logTail()
	switch {
	case out.Reject != nil:
		m.c.logf(m.id, slog.LevelInfo, "milter-reject: %s: %s;%s", what(out.Stage), strings.TrimSpace(out.Reject.DSN+" "+out.Reject.Text), tail)
		return nil, res, &RejectError{Reply: *out.Reject}
	case out.Discard:
		m.c.logf(m.id, slog.LevelInfo, "milter-discard: %s: milter triggers DISCARD action;%s", what(out.Stage), tail)
		res.discard = true
		return nil, res, nil
	}
	if out.Hold {
		m.c.logf(m.id, slog.LevelInfo, "milter-hold: %s: milter triggers HOLD action;%s", what(out.Stage), tail)
		env.Hold = true
		if env.HoldReason == "" {
			env.HoldReason = out.HoldReason
		}
	}
	if err := m.milterEnvelope(ctx, env, out); err != nil {
		return nil, res, err
	}
	if !out.Changed() {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, res, err
		}
		return r, res, nil
	}
	sp, err := newSpool(m.c.cfg.TempDir)
	if err != nil {
		return nil, res, err
	}
	m.extra = append(m.extra, sp)
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, res, err
	}
	if err := out.Apply(r, sp.f); err != nil {
		return nil, res, fmt.Errorf("cleanup: %s: applying milter changes: %w", m.id, err)
	}
	nr, err := sp.reader()
	return nr, res, err
}

// logTail is the "from=<s> to=<r> proto=P helo=<h>" end of a log line.
func (m *Message) logTail() string {
	var b strings.Builder
	b.WriteString(" from=<" + m.sender + ">")
	if rc := m.recipients(); len(rc) > 0 {
		b.WriteString(" to=<" + rc[0].Addr + ">")
	}
	if p := m.in.Client.Proto; p != "" {
		b.WriteString(" proto=" + p)
	}
	if h := m.in.Client.Helo; h != "" {
		b.WriteString(" helo=<" + h + ">")
	}
	return b.String()
}

// milterEnvelope applies the milters' sender and recipient changes: a new
// sender is rewritten like the original one, added recipients go through
// the whole recipient pipeline, deleted (and RCPT-rejected) recipients are
// removed by the address the milter saw (the original recipient).
func (m *Message) milterEnvelope(ctx context.Context, env *Envelope, out *milter.Result) error {
	drop := func(addr string) {
		kept := env.Recipients[:0]
		for _, r := range env.Recipients {
			// Postfix matches a deleted recipient exactly, case included.
			if r.Original != addr && r.Addr != addr {
				kept = append(kept, r)
			}
		}
		env.Recipients = kept
	}
	for _, rr := range out.RejectedRecipients {
		drop(rr.Addr)
	}
	b := rcptBuilder{m: m, seen: map[string]bool{}, out: env.Recipients}
	for _, r := range env.Recipients {
		b.seen[m.dupKey(r)] = true
	}
	for _, mod := range out.Mods {
		switch mod.Kind {
		case milter.ChangeSender:
			s := mod.Addr
			if rw := m.c.cfg.Rewriter; rw != nil {
				var err error
				if s, err = rw.Sender(ctx, mod.Addr, m.c.cfg.NoAddressMappings); err != nil {
					return fmt.Errorf("rewriting the milter's sender %s: %w", mod.Addr, err)
				}
			}
			env.Sender = s
		case milter.AddRecipient:
			if err := b.add(ctx, Recipient{Addr: mod.Addr, Original: mod.Addr}, false); err != nil {
				return err
			}
			env.Recipients = b.out
		case milter.DeleteRecipient:
			drop(mod.Addr)
			b.out = env.Recipients
		}
	}
	env.Recipients = b.out
	if len(env.Recipients) == 0 {
		return &RejectError{Reply: replyNoRcpt}
	}
	return nil
}

// runDKIM verifies or signs the final content: it returns the header
// lines to put on top (Authentication-Results or DKIM-Signature) and the
// content to follow them.
func (m *Message) runDKIM(ctx context.Context, env *Envelope, r io.ReadSeeker) (string, io.Reader, error) {
	d := m.c.cfg.DKIM
	sign := m.in.Local
	if !sign && d.SignClients != nil {
		ok, err := d.SignClients.Match(ctx, &m.in.Client)
		if err != nil {
			return "", nil, fmt.Errorf("cleanup: %s: postkit_dkim_signing_clients: %w", m.id, err)
		}
		sign = ok
	}
	var prefix string
	switch {
	case sign && d.Signer != nil:
		h, err := d.Signer.Sign(ctx, env.Sender, r)
		if err != nil {
			// A key problem must not lose mail: queue it unsigned and
			// say so, as opendkim does with its default on-error action.
			m.c.logf(m.id, slog.LevelWarn, "warning: DKIM signing for %s: %v", env.Sender, err)
		} else if h != "" {
			prefix = h
			m.c.logf(m.id, slog.LevelInfo, "DKIM-Signature field added")
		}
	case !sign && d.Verifier != nil:
		ar, err := d.Verifier.AuthenticationResults(ctx, r)
		if err != nil {
			m.c.logf(m.id, slog.LevelWarn, "warning: DKIM verification: %v", err)
		} else {
			prefix = foldAR("Authentication-Results: " + ar)
		}
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return "", nil, err
	}
	return prefix, r, nil
}

// foldAR folds an Authentication-Results field at its "; " separators
// and ends it with CRLF.
func foldAR(h string) string {
	return strings.ReplaceAll(h, "; ", ";\r\n\t") + "\r\n"
}

// milterFromMain reads smtpd_milters, non_smtpd_milters (with the milter
// package's settings) and the postkit_dkim_* parameters.
func milterFromMain(ctx context.Context, cfg *config.Config, c *Config) error {
	sm, err := milter.FromConfig(ctx, cfg, "smtpd_milters")
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	nm, err := milter.FromConfig(ctx, cfg, "non_smtpd_milters")
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(sm.Milters) > 0 || len(nm.Milters) > 0 {
		c.Milters = &MilterConfig{SMTPD: sm, NonSMTPD: nm}
	}
	return dkimFromMain(ctx, cfg, c)
}

// The postkit parameters for DKIM (they are not Postfix's; Postfix
// leaves DKIM to a milter such as opendkim):
//
//	postkit_dkim_key_table = type:table     sender address, domain or .parent -> selector:/key.pem or domain:selector:/key.pem
//	postkit_dkim_signing_clients = permit_mynetworks, permit_sasl_authenticated
//	postkit_dkim_verify = no                 yes: verify other mail, add Authentication-Results
//	postkit_dkim_authserv_id = $myhostname
func dkimFromMain(ctx context.Context, cfg *config.Config, c *Config) error {
	get := func(name, def string) (string, error) {
		if !cfg.IsSet(name) {
			return cfg.Expand(def)
		}
		v, _, err := cfg.Lookup(name)
		return v, err
	}
	table, err := get("postkit_dkim_key_table", "")
	if err != nil {
		return fmt.Errorf("cleanup: postkit_dkim_key_table: %w", err)
	}
	verify, err := get("postkit_dkim_verify", "no")
	if err != nil {
		return fmt.Errorf("cleanup: postkit_dkim_verify: %w", err)
	}
	switch strings.ToLower(verify) {
	case "yes", "no":
	default:
		return fmt.Errorf("cleanup: postkit_dkim_verify = %s: want yes or no", verify)
	}
	if table == "" && !strings.EqualFold(verify, "yes") {
		return nil
	}
	d := &DKIMConfig{}
	if table != "" {
		m, err := maps.Open(ctx, table)
		if err != nil {
			return fmt.Errorf("cleanup: postkit_dkim_key_table: %w", err)
		}
		if d.Signer, err = dkim.NewMapSigner(m, nil); err != nil {
			return fmt.Errorf("cleanup: postkit_dkim_key_table: %w", err)
		}
		clients, err := get("postkit_dkim_signing_clients", "permit_mynetworks, permit_sasl_authenticated")
		if err != nil {
			return fmt.Errorf("cleanup: postkit_dkim_signing_clients: %w", err)
		}
		if d.SignClients, err = parseClientList(ctx, config.NewReader(cfg), "postkit_dkim_signing_clients", config.SplitList(clients)); err != nil {
			return err
		}
	}
	if strings.EqualFold(verify, "yes") {
		id, err := get("postkit_dkim_authserv_id", "$myhostname")
		if err != nil {
			return fmt.Errorf("cleanup: postkit_dkim_authserv_id: %w", err)
		}
		d.Verifier = &dkim.Verifier{AuthServID: id, LookupTXT: net.DefaultResolver.LookupTXT}
	}
	c.DKIM = d
	return nil
}
