package pipe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/queue"
)

// The argv macros of pipe(8). Those in perRecipient make an argument
// expand once per recipient.
var (
	perRecipient = map[string]bool{
		"recipient": true, "original_recipient": true, "user": true,
		"extension": true, "mailbox": true, "domain": true,
	}
	perMessage = map[string]bool{
		"sender": true, "nexthop": true, "size": true, "queue_id": true,
		"client_address": true, "client_helo": true, "client_hostname": true,
		"client_port": true, "client_protocol": true,
		"sasl_method": true, "sasl_sender": true, "sasl_username": true,
	}
)

// template is one argv element: literal text and macro references.
type template struct {
	parts []part
	multi bool // has a per-recipient macro
}

type part struct {
	text  string
	macro bool
}

// parseTemplate parses $name, ${name}, $(name) and $$ in s. An unknown
// macro name or an unclosed brace is an error, so that a typo in
// master.cf shows when the service is set up, not as a silent empty
// argument.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return t, fmt.Errorf("%q: '$' at the end", s)
		}
		var name string
		switch c := s[i+1]; {
		case c == '$':
			lit.WriteByte('$')
			i++
			continue
		case c == '{' || c == '(':
			closing := byte('}')
			if c == '(' {
				closing = ')'
			}
			j := strings.IndexByte(s[i+2:], closing)
			if j < 0 {
				return t, fmt.Errorf("%q: missing %q", s, closing)
			}
			name = s[i+2 : i+2+j]
			i += 2 + j
		default:
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
			i = j - 1
		}
		if !perRecipient[name] && !perMessage[name] {
			return t, fmt.Errorf("%q: unknown macro name %q", s, name)
		}
		flush()
		t.parts = append(t.parts, part{text: name, macro: true})
		t.multi = t.multi || perRecipient[name]
	}
	flush()
	return t, nil
}

func (t template) uses(name string) bool {
	for _, p := range t.parts {
		if p.macro && p.text == name {
			return true
		}
	}
	return false
}

// expand returns the argument, or one per recipient when it uses a
// per-recipient macro.
func (t template) expand(m *macros) []string {
	if !t.multi {
		return []string{t.render(m, 0)}
	}
	out := make([]string, len(m.rcpts))
	for i := range m.rcpts {
		out[i] = t.render(m, i)
	}
	return out
}

func (t template) render(m *macros, i int) string {
	var b strings.Builder
	for _, p := range t.parts {
		if !p.macro {
			b.WriteString(p.text)
		} else if perRecipient[p.text] {
			b.WriteString(m.rcpts[i][p.text])
		} else {
			b.WriteString(m.msg[p.text])
		}
	}
	return b.String()
}

// macros are the values of one delivery request.
type macros struct {
	msg   map[string]string
	rcpts []map[string]string
}

func (a *Agent) macros(d *queue.Delivery, size int64) *macros {
	env := d.Envelope
	m := &macros{msg: map[string]string{
		"sender":          a.addr(env.Sender),
		"nexthop":         d.Nexthop,
		"size":            strconv.FormatInt(size, 10),
		"queue_id":        d.QueueID,
		"client_address":  env.Client.Addr,
		"client_helo":     env.Client.Helo,
		"client_hostname": env.Client.Name,
		"client_protocol": env.Client.Proto,
		"sasl_method":     env.Client.SASLMethod,
		"sasl_sender":     env.Client.SASLSender,
		"sasl_username":   env.Client.SASLUsername,
	}}
	if env.Sender == "" {
		m.msg["sender"] = a.nullSender
	}
	if env.Client.Port != 0 {
		m.msg["client_port"] = strconv.Itoa(env.Client.Port)
	}
	if a.flags.FoldHost {
		m.msg["nexthop"] = strings.ToLower(d.Nexthop)
	}
	for _, r := range d.Recipients {
		rcpt := a.fold(r.Addr)
		orig := r.Original
		if orig == "" {
			orig = r.Addr
		}
		local := address.Split(rcpt)
		user, ext := address.SplitExtension(local.Local, a.delims, address.SplitOptions{})
		if ext != "" {
			ext = ext[1:] // without the delimiter
		}
		m.rcpts = append(m.rcpts, map[string]string{
			"recipient":          a.addr(rcpt),
			"original_recipient": a.addr(a.fold(orig)),
			"user":               user,
			"extension":          ext,
			"mailbox":            local.Local,
			"domain":             local.Domain,
		})
	}
	return m
}

// fold applies flags u and h to an address in internal form.
func (a *Agent) fold(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr, ""
	if at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if a.flags.FoldUser {
		local = strings.ToLower(local)
	}
	if a.flags.FoldHost {
		domain = strings.ToLower(domain)
	}
	return local + domain
}

// addr applies flag q (RFC 822 quoting of the local part).
func (a *Agent) addr(s string) string {
	if a.flags.QuoteLocal {
		return address.Quote(s)
	}
	return s
}
