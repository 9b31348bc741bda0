package cleanup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/internal/maildate"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

// HeaderRewriteClients is local_header_rewrite_clients: the SMTP clients
// whose header addresses are rewritten in the local context (spec §6.1).
// Any item that matches is enough (they are all "permit" items).
type HeaderRewriteClients struct {
	// PermitInetInterfaces: the client's address is one of the server's
	// own (OwnAddrs; when that is empty, the address the client connected
	// to).
	PermitInetInterfaces bool
	OwnAddrs             []netip.Addr
	// MyNetworks is mynetworks, for permit_mynetworks; nil: not listed.
	MyNetworks *maps.MatchList
	// PermitSASLAuthenticated: the client logged in with AUTH.
	PermitSASLAuthenticated bool
	// AddressMaps are the check_address_map tables: the client IP
	// address is looked up, and any match counts (the value is ignored).
	AddressMaps []maps.Map
}

// Match reports whether the client gets local header rewriting.
func (h *HeaderRewriteClients) Match(ctx context.Context, ci *ClientInfo) (bool, error) {
	ip, err := netip.ParseAddr(ci.Addr)
	if err != nil {
		return false, nil
	}
	ip = ip.Unmap()
	if h.PermitInetInterfaces {
		for _, a := range h.OwnAddrs {
			if a.Unmap() == ip {
				return true, nil
			}
		}
		// Without a list, the address the client connected to stands
		// for the server's own.
		if s, err := netip.ParseAddr(ci.ServerAddr); err == nil && len(h.OwnAddrs) == 0 && s.Unmap() == ip {
			return true, nil
		}
	}
	if h.MyNetworks != nil {
		ok, err := h.MyNetworks.MatchHostAddr(ctx, ci.Name, ip)
		if err != nil || ok {
			return ok, err
		}
	}
	if h.PermitSASLAuthenticated && ci.SASLUsername != "" {
		return true, nil
	}
	for _, t := range h.AddressMaps {
		_, ok, err := t.Lookup(ctx, ip.String())
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// hdrContext says whether header addresses are rewritten (and missing
// headers added), and in which domain context.
type hdrContext struct {
	rewrite bool
	domain  string // "" local ($myorigin/$mydomain), else remote_header_rewrite_domain
}

func (m *Message) headerContext() (hdrContext, error) {
	if m.in.Local {
		return hdrContext{rewrite: true}, nil
	}
	if h := m.c.cfg.LocalHeaderRewriteClients; h != nil {
		ok, err := h.Match(m.ctx, &m.in.Client)
		if err != nil {
			return m.remoteContext(), err
		}
		if ok {
			return hdrContext{rewrite: true}, nil
		}
	}
	return m.remoteContext(), nil
}

func (m *Message) remoteContext() hdrContext {
	d := m.c.cfg.RemoteHeaderRewriteDomain
	if d == "" && m.c.cfg.Rewriter != nil {
		d = m.c.cfg.Rewriter.Config().RemoteHeaderRewriteDomain
	}
	if d == "" {
		return hdrContext{}
	}
	return hdrContext{rewrite: true, domain: d}
}

// Header types cleanup keeps track of (header_opts.c).
const (
	hMessageID = 1 << iota
	hResentMessageID
	hDate
	hResentDate
	hFrom
	hResentFrom
	hTo
	hResentTo
	hCc
	hResentCc
)

var knownHeaders = map[string]int{
	"message-id": hMessageID, "resent-message-id": hResentMessageID,
	"date": hDate, "resent-date": hResentDate,
	"from": hFrom, "resent-from": hResentFrom,
	"to": hTo, "resent-to": hResentTo,
	"cc": hCc, "resent-cc": hResentCc,
}

// resentHeaders are the headers that put a message in Resent- mode
// (HDR_OPT_RR): the missing headers then are the Resent- ones, and
// sendmail -t takes the Resent- recipients.
var resentHeaders = map[string]bool{
	"resent-bcc": true, "resent-cc": true, "resent-date": true, "resent-from": true,
	"resent-message-id": true, "resent-reply-to": true, "resent-sender": true, "resent-to": true,
}

// headerState follows the primary headers of one message.
type headerState struct {
	m            *Message
	hops         int
	hopsExceeded bool
	resent       bool
	seenBits     int
	messageID    string
	recip        []string // To/Cc/Bcc addresses, for sendmail -t
	resentRecip  []string // Resent-To/Cc/Bcc addresses
	err          error    // a table error while rewriting a header
	closed       bool
}

func (s *headerState) init(m *Message) { *s = headerState{m: m} }

// seen is called for every primary header before the checks: Received:
// headers count as hops even when a check removes them (spec §5.1).
func (s *headerState) seen(h *contentcheck.Header) {
	if strings.EqualFold(h.Name, "received") {
		s.hops++
		if s.hops >= s.m.c.cfg.HopcountLimit {
			s.hopsExceeded = true
		}
	}
}

// headerValue is the text after "Name:", continuation lines included,
// without the final CRLF.
func headerValue(h *contentcheck.Header) string {
	raw := h.Raw
	if i := bytes.IndexByte(raw, ':'); i >= 0 {
		raw = raw[i+1:]
	}
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	return string(raw)
}

// unfold joins continuation lines (RFC 5322 2.2.3).
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.ReplaceAll(v, "\n", "")
}

// header handles one primary header that survived the checks.
func (s *headerState) header(h *contentcheck.Header, w io.Writer) error {
	m := s.m
	name := strings.ToLower(h.Name)
	bit := knownHeaders[name]
	raw := h.Raw
	switch name {
	case "message-id":
		// Logged as Postfix does: leading white space skipped, the rest
		// as received.
		v := strings.TrimLeft(unfold(headerValue(h)), " \t")
		if s.seenBits&hMessageID == 0 {
			s.messageID = strings.TrimSpace(v)
		}
		m.c.logf(m.id, slog.LevelInfo, "message-id=%s", v)
	case "resent-message-id":
		m.c.logf(m.id, slog.LevelInfo, "resent-message-id=%s", strings.TrimLeft(unfold(headerValue(h)), " \t"))
	}
	if resentHeaders[name] {
		s.resent = true
	}
	if m.in.ExtractRecipients {
		// sendmail -t takes the addresses as written (they become the
		// original recipients), before header rewriting.
		switch name {
		case "to", "cc", "bcc":
			s.recip = appendAddrs(s.recip, raw)
		case "resent-to", "resent-cc", "resent-bcc":
			s.resentRecip = appendAddrs(s.resentRecip, raw)
		}
	}
	_, isAddr := rewrite.HeaderClass(h.Name)
	if isAddr && m.hdrCtx.rewrite && m.c.cfg.Rewriter != nil {
		// A regenerated header keeps the name as received.
		hn := h.Name
		nv, changed, err := m.c.cfg.Rewriter.HeaderLine(m.ctx, hn, headerValue(h), m.hdrCtx.domain, m.c.cfg.NoAddressMappings)
		if err != nil {
			if s.err == nil {
				s.err = fmt.Errorf("rewriting header %s: %w", h.Name, err)
			}
		} else if changed {
			if !strings.HasPrefix(nv, " ") && !strings.HasPrefix(nv, "\t") {
				nv = " " + nv
			}
			nv = strings.TrimRight(nv, "\r\n")
			raw = []byte(hn + ":" + nv + "\r\n")
		}
	}
	s.seenBits |= bit
	if m.c.drop[name] {
		return nil
	}
	_, err := w.Write(raw)
	return err
}

// appendAddrs adds the addresses of a recipient header (its raw bytes).
func appendAddrs(list []string, raw []byte) []string {
	v := string(raw)
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	mbs, err := address.ParseList(unfold(v))
	if err != nil {
		// Postfix's tokenizer takes what it can; so do we, address by
		// address, on a comma split.
		for _, part := range strings.Split(unfold(v), ",") {
			if one, err := address.ParseList(part); err == nil {
				mbs = append(mbs, one...)
			}
		}
	}
	for _, mb := range mbs {
		if !mb.Address.IsNull() {
			list = append(list, mb.Address.Internal())
		}
	}
	return list
}

// extracted returns the recipients of sendmail -t: the Resent- ones when
// the message has Resent- headers.
func (s *headerState) extracted() []string {
	if s.resent {
		return s.resentRecip
	}
	return s.recip
}

// endOfHeaders adds the missing headers (spec §6.4,
// cleanup_header_done_callback), in the header rewriting context or with
// always_add_missing_headers.
func (s *headerState) endOfHeaders(w io.Writer) error {
	m := s.m
	if s.hopsExceeded {
		// The message is refused: Postfix adds and logs nothing more.
		return nil
	}
	cfg := &m.c.cfg
	add := m.hdrCtx.rewrite || cfg.AlwaysAddMissingHeaders
	prefix, rbit := "", 0
	if s.resent {
		prefix = "Resent-"
		rbit = 1 // the Resent- bit is the one after the plain one
	}
	var b strings.Builder
	if add && s.seenBits&(hMessageID<<rbit) == 0 {
		var id string
		if cfg.LongQueueIDs {
			id = m.id + "@" + cfg.Hostname
		} else {
			id = m.in.Arrival.UTC().Format("20060102150405") + "." + m.id + "@" + cfg.Hostname
		}
		b.WriteString(prefix + "Message-Id: <" + id + ">\r\n")
		m.c.logf(m.id, slog.LevelInfo, "%smessage-id=<%s>", strings.ToLower(prefix), id)
		s.seenBits |= hMessageID << rbit
		if !s.resent {
			s.messageID = "<" + id + ">"
		}
	}
	if s.seenBits&hMessageID == 0 {
		m.c.logf(m.id, slog.LevelInfo, "message-id=<>")
	}
	if add && s.seenBits&(hDate<<rbit) == 0 {
		b.WriteString(prefix + "Date: " + maildate.Format(m.in.Arrival.In(cfg.Location)) + "\r\n")
	}
	if add && s.seenBits&(hFrom<<rbit) == 0 {
		b.WriteString(prefix + "From: " + m.fromHeader() + "\r\n")
	}
	if add && s.seenBits&(hTo<<rbit) == 0 && s.seenBits&(hCc<<rbit) == 0 && cfg.UndisclosedRecipientsHeader != "" {
		u := cfg.UndisclosedRecipientsHeader
		if i := strings.IndexByte(u, ':'); i <= 0 || strings.ContainsAny(u[:i], " \t") {
			m.c.logf(m.id, slog.LevelWarn, "warning: bad undisclosed_recipients_header format: %s", u)
		} else {
			b.WriteString(u + "\r\n")
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fromHeader is the value of an added From: header: the envelope sender
// in external form (MAILER-DAEMON for the null sender), with the full
// name per header_from_format.
func (m *Message) fromHeader() string {
	if m.sender == "" {
		return "MAILER-DAEMON"
	}
	addr := address.Quote(m.sender)
	name := strings.TrimSpace(m.in.FullName)
	if name == "" {
		return addr
	}
	if m.c.cfg.HeaderFromFormat == "obsolete" {
		r := strings.NewReplacer("\\", "\\\\", "(", "\\(", ")", "\\)")
		return addr + " (" + r.Replace(name) + ")"
	}
	return phrase(name) + " <" + addr + ">"
}

// phrase quotes a display name unless it is atoms separated by spaces
// (RFC 5322 3.2.5).
func phrase(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c >= 0x80 || isAtext(c) {
			continue
		}
		plain = false
		break
	}
	if plain {
		return s
	}
	r := strings.NewReplacer("\\", "\\\\", "\"", "\\\"")
	return "\"" + r.Replace(s) + "\""
}

func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
