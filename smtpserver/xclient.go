package smtpserver

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/postkit-mail/postkit/restrictions"
)

// XCLIENT (Postfix XCLIENT_README) lets an authorized proxy or test tool
// set the client identity; XFORWARD (XFORWARD_README) passes the original
// client's identity along for logging.

const (
	xUnavailable = "[UNAVAILABLE]"
	xTempUnavail = "[TEMPUNAVAIL]"
)

// families are the address families of inet_protocols; XCLIENT refuses
// an address of a disabled family.
type families struct{ noV4, noV6 bool }

// xattr is one attribute=value pair, value xtext-decoded.
type xattr struct{ name, value string }

var xclientNames = map[string]bool{"NAME": true, "REVERSE_NAME": true, "ADDR": true, "PORT": true,
	"PROTO": true, "HELO": true, "LOGIN": true, "DESTADDR": true, "DESTPORT": true}

var xforwardNames = map[string]bool{"NAME": true, "ADDR": true, "PORT": true, "PROTO": true,
	"HELO": true, "IDENT": true, "SOURCE": true}

// parseXAttrs splits "NAME=x ADDR=y" and checks names and values. It
// returns the reply for bad input ("" when fine).
func parseXAttrs(cmd, arg string, names map[string]bool, fam families) ([]xattr, string) {
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		return nil, "501 5.5.4 Syntax: " + cmd + " attribute=value..."
	}
	var out []xattr
	for _, f := range fields {
		name, raw, ok := strings.Cut(f, "=")
		name = strings.ToUpper(name)
		if !ok || !names[name] {
			return nil, "501 5.5.4 Bad " + cmd + " attribute name: " + printable(name)
		}
		v, ok := xtextDecode(raw)
		if !ok {
			return nil, "501 5.5.4 Bad " + cmd + " attribute value: " + printable(raw)
		}
		if reply := checkXValue(name, v, fam); reply != "" {
			return nil, reply
		}
		out = append(out, xattr{name, v})
	}
	return out, ""
}

func checkXValue(name, v string, fam families) string {
	if v == xUnavailable || v == xTempUnavail {
		return ""
	}
	bad := "501 5.5.4 Bad " + name + " syntax: " + printable(v)
	switch name {
	case "NAME", "REVERSE_NAME":
		if !validHostname(v) {
			return bad
		}
	case "ADDR", "DESTADDR":
		a, ok := parseXAddr(v)
		if !ok || (a.Is4() && fam.noV4) || (a.Is6() && fam.noV6) {
			return bad
		}
	case "PORT", "DESTPORT":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 || !isDigits(v) {
			return bad
		}
	case "PROTO":
		if !strings.EqualFold(v, "SMTP") && !strings.EqualFold(v, "ESMTP") {
			return bad
		}
	case "HELO", "LOGIN", "IDENT", "SOURCE":
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] == 0x7f {
				return bad
			}
		}
	}
	return ""
}

func parseXAddr(v string) (netip.Addr, bool) {
	if len(v) > 5 && strings.EqualFold(v[:5], "IPV6:") {
		a, err := netip.ParseAddr(v[5:])
		return a, err == nil && a.Is6()
	}
	a, err := netip.ParseAddr(v)
	return a, err == nil && a.Is4()
}

// validHostname is Postfix's valid_hostname(): labels of letters, digits,
// '-' and '_', not starting or ending with '-', at most 255 characters.
func validHostname(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (s *session) xclientOK() bool {
	if s.cfg.XClientHosts == nil {
		return false
	}
	ok, _ := s.cfg.XClientHosts.MatchHostAddr(s.ctx, s.snap.ClientName, s.snap.ClientAddr)
	return ok
}

func (s *session) xforwardOK() bool {
	if s.cfg.XForwardHosts == nil {
		return false
	}
	ok, _ := s.cfg.XForwardHosts.MatchHostAddr(s.ctx, s.snap.ClientName, s.snap.ClientAddr)
	return ok
}

func (s *session) cmdXClient(arg string) (bool, error) {
	if s.inMail {
		s.reply("503 5.5.1 Error: MAIL transaction in progress")
		return false, nil
	}
	if !s.xclientOK() {
		s.reply("550 5.7.0 Error: insufficient authorization")
		return false, nil
	}
	attrs, reply := parseXAttrs("XCLIENT", arg, xclientNames, s.srv.families())
	if reply != "" {
		s.reply(reply)
		return false, nil
	}
	nameSet, revSet := false, false
	for _, a := range attrs {
		unavail := a.value == xUnavailable || a.value == xTempUnavail
		status := restrictions.NamePermFail
		if a.value == xTempUnavail {
			status = restrictions.NameTempFail
		}
		switch a.name {
		case "NAME":
			nameSet = true
			if unavail {
				s.snap.ClientName, s.snap.ClientNameStatus = "unknown", status
			} else {
				s.snap.ClientName, s.snap.ClientNameStatus = a.value, restrictions.NameOK
			}
		case "REVERSE_NAME":
			revSet = true
			if unavail {
				s.snap.ReverseName, s.snap.ReverseNameStatus = "unknown", status
			} else {
				s.snap.ReverseName, s.snap.ReverseNameStatus = a.value, restrictions.NameOK
			}
		case "ADDR":
			if unavail {
				s.snap.ClientAddr = netip.Addr{}
			} else {
				s.snap.ClientAddr, _ = parseXAddr(a.value)
			}
		case "PORT":
			s.snap.ClientPort, _ = strconv.Atoi(a.value)
		case "DESTADDR":
			if !unavail {
				s.snap.ServerAddr, _ = parseXAddr(a.value)
			}
		case "DESTPORT":
			s.snap.ServerPort, _ = strconv.Atoi(a.value)
		case "PROTO":
			// Applied with HELO below.
		case "LOGIN":
			if unavail {
				s.authed, s.snap.SASLMethod, s.snap.SASLUsername = false, "", ""
			} else {
				s.authed, s.snap.SASLMethod, s.snap.SASLUsername = true, "XCLIENT", a.value
			}
		}
	}
	if nameSet && !revSet {
		s.snap.ReverseName, s.snap.ReverseNameStatus = s.snap.ClientName, s.snap.ClientNameStatus
	}
	// XCLIENT starts a new session: forget HELO and the transaction, then
	// apply HELO/PROTO from the command.
	s.heloReset()
	s.snap.Txn = restrictions.Txn{}
	for _, a := range attrs {
		switch a.name {
		case "HELO":
			if a.value != xUnavailable && a.value != xTempUnavail {
				s.snap.Helo = a.value
			}
		case "PROTO":
			s.esmtp = strings.EqualFold(a.value, "ESMTP")
			s.snap.ESMTP = s.esmtp
		}
	}
	s.updateNamaddr()
	s.accessDenied = nil
	if !s.connectStage("XCLIENT") {
		return true, errClose
	}
	return true, nil
}

func (s *session) cmdXForward(arg string) (bool, error) {
	if s.inMail {
		s.reply("503 5.5.1 Error: MAIL transaction in progress")
		return false, nil
	}
	if !s.xforwardOK() {
		s.reply("550 5.7.0 Error: insufficient authorization")
		return false, nil
	}
	attrs, reply := parseXAttrs("XFORWARD", arg, xforwardNames, s.srv.families())
	if reply != "" {
		s.reply(reply)
		return false, nil
	}
	if s.xforward == nil {
		s.xforward = map[string]string{}
	}
	for _, a := range attrs {
		s.xforward[a.name] = a.value
	}
	s.reply("250 2.0.0 Ok")
	return true, nil
}

func (srv *Server) families() families {
	if len(srv.cfg.InetProtocols) == 0 {
		return families{}
	}
	f := families{noV4: true, noV6: true}
	for _, p := range srv.cfg.InetProtocols {
		switch strings.ToLower(p) {
		case "ipv4":
			f.noV4 = false
		case "ipv6":
			f.noV6 = false
		case "all":
			return families{}
		}
	}
	return f
}
