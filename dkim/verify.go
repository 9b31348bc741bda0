package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postkit-mail/postkit/resolver"
)

// TXTFunc looks up the TXT records of a name, each record's strings joined
// (resolver.Resolver's LookupTXT has this shape). Errors for which
// resolver.IsTemporary is true, or net.Errors that are timeouts or
// temporary, give temperror; other errors (no such name) give permerror.
type TXTFunc func(ctx context.Context, name string) ([]string, error)

// Result values of RFC 8601 section 2.7.1 for DKIM.
const (
	Pass      = "pass"
	Fail      = "fail"
	Neutral   = "neutral"
	TempError = "temperror"
	PermError = "permerror"
	None      = "none"
)

// Result is the outcome for one DKIM-Signature field.
type Result struct {
	Value      string // pass, fail, neutral, temperror, permerror
	Reason     string // why it did not pass
	Domain     string // d=
	Identifier string // i=
	Selector   string // s=
	Algorithm  string // a=
	B          string // the start of b=, for header.b (RFC 6008)
	Err        error  // go-msgauth's error, nil on pass
}

// Verifier checks the DKIM signatures of incoming mail.
type Verifier struct {
	// AuthServID names this host in Authentication-Results (RFC 8601
	// section 2.5); "" means the machine's host name.
	AuthServID string
	// LookupTXT finds key records; required.
	LookupTXT TXTFunc
	// MaxSignatures bounds the signatures checked per message (more are
	// ignored, a guard against messages made to cost many lookups); 0
	// means 5.
	MaxSignatures int
}

// Verify checks every DKIM-Signature of msg, with key records from txt,
// and returns an Authentication-Results header value: the host name as
// authserv-id, then one "dkim=" result per signature, or "dkim=none" for an
// unsigned message. Use Verifier to set the authserv-id.
func Verify(ctx context.Context, msg io.Reader, txt func(ctx context.Context, name string) ([]string, error)) (string, error) {
	v := &Verifier{LookupTXT: txt}
	return v.AuthenticationResults(ctx, msg)
}

// AuthenticationResults verifies msg and formats the results as an
// Authentication-Results header value (without the field name).
func (v *Verifier) AuthenticationResults(ctx context.Context, msg io.Reader) (string, error) {
	res, err := v.Verify(ctx, msg)
	if err != nil {
		return "", err
	}
	id := v.AuthServID
	if id == "" {
		id, _ = os.Hostname()
		if id == "" {
			id = "localhost"
		}
	}
	return Format(id, res), nil
}

// Verify checks every DKIM-Signature of msg and returns one Result each,
// top to bottom. An error means msg could not be read or its header parsed.
func (v *Verifier) Verify(ctx context.Context, msg io.Reader) ([]Result, error) {
	if v.LookupTXT == nil {
		return nil, errors.New("dkim: verifier has no TXT lookup")
	}
	data, err := io.ReadAll(msg)
	if err != nil {
		return nil, fmt.Errorf("dkim: reading the message: %w", err)
	}
	var sigs []map[string]string
	for _, f := range headerFields(data) {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			sigs = append(sigs, parseTags(string(f.raw[bytes.IndexByte(f.raw, ':')+1:])))
		}
	}
	if len(sigs) == 0 {
		return nil, nil
	}
	max := v.MaxSignatures
	if max <= 0 {
		max = 5
	}
	lookup := func(name string) ([]string, error) {
		recs, err := v.LookupTXT(ctx, name)
		if err != nil && isTemporary(err) {
			// go-msgauth tells temporary failures by net.Error.Temporary.
			return nil, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
		}
		return recs, err
	}
	verifs, err := msgdkim.VerifyWithOptions(bytes.NewReader(data), &msgdkim.VerifyOptions{
		LookupTXT:        lookup,
		MaxVerifications: max,
	})
	if err != nil && !errors.Is(err, msgdkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("dkim: verifying: %w", err)
	}
	out := make([]Result, 0, len(verifs))
	for i, vf := range verifs {
		r := Result{Domain: vf.Domain, Err: vf.Err}
		if i < len(sigs) {
			t := sigs[i]
			if r.Domain == "" {
				r.Domain = t["d"]
			}
			// header.i only when the signer gave i= (go-msgauth fills in
			// the default "@d").
			r.Identifier = t["i"]
			r.Selector, r.Algorithm = t["s"], t["a"]
			r.B = t["b"]
			if len(r.B) > 8 {
				r.B = r.B[:8]
			}
		}
		r.Value, r.Reason = classify(vf.Err)
		out = append(out, r)
	}
	return out, nil
}

// classify maps go-msgauth's error kinds onto RFC 8601 result values:
// a signature or body hash that does not match is fail; a key that cannot
// be fetched now is temperror; a key or signature that cannot be used
// (missing, revoked, weak, expired, wrong algorithm) is permerror; a
// signature whose tags cannot be parsed is neutral (RFC 8601 2.7.1:
// "syntax errors").
func classify(err error) (value, reason string) {
	switch {
	case err == nil:
		return Pass, ""
	case msgdkim.IsTempFail(err):
		return TempError, trimReason(err)
	case msgdkim.IsPermFail(err):
		r := trimReason(err)
		if strings.HasPrefix(r, "malformed") || strings.Contains(r, "missing required tag") ||
			strings.Contains(r, "incompatible signature version") {
			return Neutral, r
		}
		return PermError, r
	}
	return Fail, trimReason(err)
}

func trimReason(err error) string {
	return strings.TrimPrefix(err.Error(), "dkim: ")
}

func isTemporary(err error) bool {
	if resolver.IsTemporary(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsTemporary {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// parseTags reads a DKIM tag list ("v=1; a=rsa-sha256; ...", RFC 6376
// section 3.2) with folding white space removed from the values.
func parseTags(s string) map[string]string {
	m := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.Join(strings.Fields(v), "")
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}

// Format writes results as an Authentication-Results value (RFC 8601):
// "authserv-id;\r\n\tdkim=pass header.d=example.com header.a=rsa-sha256
// header.s=sel header.b=AbCdEfGh" with one folded "dkim=" resinfo per
// result (header.i only when the signature has i=; header.b is the first 8
// characters of b=, RFC 6008), or "authserv-id; dkim=none" when there are
// none.
func Format(authservID string, results []Result) string {
	var b strings.Builder
	b.WriteString(authservID)
	if len(results) == 0 {
		b.WriteString("; dkim=none")
		return b.String()
	}
	for _, r := range results {
		b.WriteString(";\r\n\tdkim=")
		b.WriteString(r.Value)
		if r.Reason != "" {
			b.WriteString(" reason=")
			b.WriteString(quote(r.Reason))
		}
		prop := func(name, value string) {
			if value != "" {
				b.WriteString(" header.")
				b.WriteString(name)
				b.WriteByte('=')
				b.WriteString(quote(value))
			}
		}
		prop("d", r.Domain)
		prop("i", r.Identifier)
		prop("a", r.Algorithm)
		prop("s", r.Selector)
		prop("b", r.B)
	}
	return b.String()
}

// quote returns v as an RFC 2045 token when it is one, else as a
// quoted-string (RFC 8601 section 2.2 "value").
func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, "()<>@,;:\\\"/[]?= \t\r\n") && isPrintable(v) {
		return v
	}
	if strings.HasPrefix(v, "@") && isDomainish(v[1:]) {
		return v // header.i=@example.com: the RFC 8601 local-part@domain form
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(v) {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func isPrintable(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func isDomainish(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
