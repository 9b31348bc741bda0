package imapserver

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charsets for SEARCH of decoded text
	"github.com/emersion/go-message/textproto"
	"github.com/postkit-mail/postkit/mailbox"
)

// Search is IMAP SEARCH and UID SEARCH with every RFC 3501 key (go-imap
// parses them into SearchCriteria), ESEARCH's RETURN options and
// SEARCHRES. HEADER, BODY and TEXT compare case-insensitively with the
// decoded text: RFC 2047 words in headers, transfer encodings and
// charsets in bodies (as Dovecot does without full-text search).
func (se *session) Search(kind goimapserver.NumKind, c *imap.SearchCriteria, opts *imap.SearchOptions) (*imap.SearchData, error) {
	sel := se.sel
	var hits []int
	for i := range sel.view {
		v := &sel.view[i]
		if v.gone {
			continue
		}
		m, ok := sel.md.Message(v.uid)
		if !ok {
			continue
		}
		mc := &matchCtx{se: se, seq: uint32(i + 1), v: v, m: m}
		ok, err := mc.match(c)
		if err != nil {
			return nil, err
		}
		if ok {
			hits = append(hits, i)
		}
	}
	data := &imap.SearchData{Count: uint32(len(hits))}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for _, i := range hits {
		seqs.AddNum(uint32(i + 1))
		uids.AddNum(imap.UID(sel.view[i].uid))
	}
	if len(hits) > 0 {
		first, last := hits[0], hits[len(hits)-1]
		if kind == goimapserver.NumKindUID {
			data.Min, data.Max = sel.view[first].uid, sel.view[last].uid
		} else {
			data.Min, data.Max = uint32(first+1), uint32(last+1)
		}
	}
	if kind == goimapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if opts.ReturnSave {
		sel.saved = sel.saved[:0]
		for _, i := range hits {
			sel.saved = append(sel.saved, sel.view[i].uid)
		}
	}
	return data, nil
}

type matchCtx struct {
	se  *session
	seq uint32
	v   *viewMsg
	m   mailbox.Message
	raw []byte // CRLF, loaded on demand
	hdr *textproto.Header
}

func (mc *matchCtx) load() error {
	if mc.raw != nil {
		return nil
	}
	b, err := mc.se.s.readMessage(mc.se.ctx, mc.se.sel.md, mc.m)
	if err != nil {
		if isGone(err) {
			mc.raw = []byte{}
			return nil
		}
		return mc.se.mapErr(err)
	}
	mc.raw = b
	return nil
}

func (mc *matchCtx) header() (*textproto.Header, error) {
	if mc.hdr != nil {
		return mc.hdr, nil
	}
	if err := mc.load(); err != nil {
		return nil, err
	}
	h := parseMIME(mc.raw, 0, len(mc.raw), false, maxMIMEDepth).textprotoHeader()
	mc.hdr = &h
	return mc.hdr, nil
}

func (mc *matchCtx) match(c *imap.SearchCriteria) (bool, error) {
	for _, set := range c.SeqNum {
		if !inSeqSet(set, mc.seq, uint32(len(mc.se.sel.view))) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			found := false
			for _, u := range mc.se.sel.saved {
				found = found || u == mc.m.UID
			}
			if !found {
				return false, nil
			}
			continue
		}
		if !inUIDSet(set, mc.m.UID, mc.se.sel.maxUID) {
			return false, nil
		}
	}
	for _, f := range c.Flag {
		if !mc.hasFlag(f) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if mc.hasFlag(f) {
			return false, nil
		}
	}
	if !c.Since.IsZero() || !c.Before.IsZero() {
		d := dateOnly(mc.m.InternalDate.In(time.Local))
		if !c.Since.IsZero() && d.Before(dateOnly(c.Since)) {
			return false, nil
		}
		if !c.Before.IsZero() && !d.Before(dateOnly(c.Before)) {
			return false, nil
		}
	}
	if c.Larger > 0 || c.Smaller > 0 {
		size, err := mc.se.s.messageSize(mc.se.ctx, mc.se.sel.md, mc.m)
		if err != nil {
			if isGone(err) {
				return false, nil
			}
			return false, mc.se.mapErr(err)
		}
		if c.Larger > 0 && size <= c.Larger {
			return false, nil
		}
		if c.Smaller > 0 && size >= c.Smaller {
			return false, nil
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h, err := mc.header()
		if err != nil {
			return false, err
		}
		t, err := mailDate(h.Get("Date"))
		if err != nil {
			// no usable Date: the epoch, as Dovecot takes it
			t = time.Unix(0, 0).UTC()
		}
		d := dateOnly(t)
		if !c.SentSince.IsZero() && d.Before(dateOnly(c.SentSince)) {
			return false, nil
		}
		if !c.SentBefore.IsZero() && !d.Before(dateOnly(c.SentBefore)) {
			return false, nil
		}
	}
	for _, hf := range c.Header {
		h, err := mc.header()
		if err != nil {
			return false, err
		}
		if !matchHeader(h, hf.Key, hf.Value) {
			return false, nil
		}
	}
	for _, s := range c.Body {
		if err := mc.load(); err != nil {
			return false, err
		}
		if !bodyContains(mc.raw, s, false) {
			return false, nil
		}
	}
	for _, s := range c.Text {
		if err := mc.load(); err != nil {
			return false, err
		}
		if !bodyContains(mc.raw, s, true) {
			return false, nil
		}
	}
	for i := range c.Not {
		ok, err := mc.match(&c.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		a, err := mc.match(&c.Or[i][0])
		if err != nil {
			return false, err
		}
		if !a {
			b, err := mc.match(&c.Or[i][1])
			if err != nil || !b {
				return false, err
			}
		}
	}
	return true, nil
}

func (mc *matchCtx) hasFlag(f imap.Flag) bool {
	if strings.EqualFold(string(f), string(flagRecent)) {
		return mc.v.recent
	}
	for _, x := range imapFlags(mc.m, false) {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func inSeqSet(set imap.SeqSet, n, max uint32) bool {
	for _, r := range set {
		a, b := r.Start, r.Stop
		if a == 0 {
			a = max
		}
		if b == 0 {
			b = max
		}
		if a > b {
			a, b = b, a
		}
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

func inUIDSet(set imap.UIDSet, n, max uint32) bool {
	for _, r := range set {
		a, b := uint32(r.Start), uint32(r.Stop)
		if a == 0 {
			a = max
		}
		if b == 0 {
			b = max
		}
		if a > b {
			a, b = b, a
		}
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

func dateOnly(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// mailDate parses an RFC 5322 date (with the obsolete forms mail.ParseDate
// accepts).
func mailDate(s string) (time.Time, error) {
	return mail.ParseDate(strings.TrimSpace(s))
}

var wordDecoder = &mime.WordDecoder{CharsetReader: message.CharsetReader}

func decodeHeader(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// fold makes text comparable case-insensitively, and unfolds white space
// runs (a header value folded over lines still matches).
func fold(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

func matchHeader(h *textproto.Header, key, value string) bool {
	vals := h.Values(key)
	if len(vals) == 0 {
		return false
	}
	if value == "" {
		return true
	}
	want := fold(value)
	for _, v := range vals {
		if strings.Contains(fold(decodeHeader(v)), want) {
			return true
		}
	}
	// Address fields also match in their parsed form, as Dovecot
	// searches them (an empty address reads MISSING_MAILBOX@MISSING_DOMAIN).
	var list []imap.Address
	env := addrEnvelope(h)
	switch strings.ToLower(key) {
	case "from":
		list = env.From
	case "to":
		list = env.To
	case "cc":
		list = env.Cc
	case "bcc":
		list = env.Bcc
	}
	for _, a := range list {
		if strings.Contains(fold(a.Name+" <"+a.Mailbox+"@"+a.Host+">"), want) {
			return true
		}
	}
	return false
}

func addrEnvelope(h *textproto.Header) *imap.Envelope {
	p := &mimePart{}
	for f := h.Fields(); f.Next(); {
		p.fields = append(p.fields, hfield{key: f.Key(), value: f.Value()})
	}
	return p.envelope()
}

// bodyContains looks for s in the decoded text of the message's text
// parts (transfer encoding and charset undone; other parts are not
// searched, as in Dovecot) and, for TEXT, in the decoded header fields of
// the message and its parts.
func bodyContains(raw []byte, s string, withHeader bool) bool {
	want := fold(s)
	if want == "" {
		return true
	}
	return partContains(parseMIME(raw, 0, len(raw), false, 0), want, withHeader)
}

func partContains(p *mimePart, want string, withHeader bool) bool {
	if withHeader {
		for _, f := range p.fields {
			if !strings.HasPrefix(f.key, "\x00") && strings.Contains(fold(f.key+": "+decodeHeader(f.value)), want) {
				return true
			}
		}
	}
	switch {
	case p.msg != nil:
		return partContains(p.msg, want, withHeader)
	case len(p.children) > 0:
		for _, c := range p.children {
			if partContains(c, want, withHeader) {
				return true
			}
		}
		return false
	case !strings.EqualFold(p.typ, "text"):
		return false
	}
	e, err := message.New(message.Header{Header: p.textprotoHeader()}, bytes.NewReader(p.body()))
	var b []byte
	if e != nil {
		b, _ = io.ReadAll(io.LimitReader(e.Body, 64<<20))
	}
	if e == nil || (err != nil && len(b) == 0) {
		b = p.body()
	}
	return strings.Contains(fold(string(b)), want)
}
