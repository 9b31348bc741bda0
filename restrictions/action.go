package restrictions

import (
	"context"
	"strings"
)

// tableResult is check_table_result: it interprets the value an access
// table, a policy server or a Go Func returned (access(5), spec §3).
// table names the source for warnings, datum is what was looked up.
func (e *eval) tableResult(ctx context.Context, table, value, datum, replyName, replyClass, defACL string) (status, error) {
	cmd, text := value, ""
	if i := strings.IndexAny(value, " \t"); i >= 0 {
		cmd = value[:i]
		text = strings.TrimLeft(value[i:], " \t\r\n\v\f")
	}
	// The checks below format replies for this reply name and class.
	savedName, savedClass := e.replyName, e.replyClass
	e.replyName, e.replyClass = replyName, replyClass
	defer func() { e.replyName, e.replyClass = savedName, savedClass }()

	switch strings.ToUpper(cmd) {
	case "DUNNO":
		return statusDunno, nil
	case "REJECT":
		dsn, t := splitDSN("5.7.1", text)
		return e.reject(classPolicy, e.c.cfg.AccessMapRejectCode, fixDSN(dsn, replyClass), orDefault(t, "Access denied")), nil
	case "DEFER":
		dsn, t := splitDSN("4.7.1", text)
		return e.reject(classPolicy, e.c.cfg.AccessMapDeferCode, fixDSN(dsn, replyClass), orDefault(t, "Access denied")), nil
	case "HANGUP":
		e.logEvent("hangup", text)
		e.hangup = true
		e.reply = ""
		return statusReject, &abort{st: statusReject}
	case "INFO":
		e.logEvent("info", text)
		return statusDunno, nil
	case "WARN":
		e.logEvent("warn", text)
		return statusDunno, nil
	case "FILTER":
		if !e.canDelegate(table, "FILTER") {
			return statusDunno, nil
		}
		switch {
		case text == "":
			e.warnf("access table %s entry \"%s\" has FILTER entry without value", table, datum)
		case !strings.Contains(text, ":"):
			e.warnf("access table %s entry \"%s\" requires transport:destination", table, datum)
		default:
			e.logEvent("filter", "<"+replyName+">: "+replyClass+" triggers FILTER "+text)
			e.d.Effects.Filter = text
		}
		return statusDunno, nil
	case "HOLD":
		if !e.canDelegate(table, "HOLD") || e.hold {
			return statusDunno, nil
		}
		e.logEvent("hold", "<"+replyName+">: "+replyClass+" "+orDefault(text, "triggers HOLD action"))
		e.hold = true
		e.d.Effects.Hold = true
		return statusDunno, nil
	case "DISCARD":
		if !e.canDelegate(table, "DISCARD") {
			return statusDunno, nil
		}
		e.logEvent("discard", "<"+replyName+">: "+replyClass+" "+orDefault(text, "triggers DISCARD action"))
		e.discard = true
		e.d.Effects.Discard = true
		return e.permit(ctx, cmd, replyClass, replyName, "from "+table), nil
	case "REDIRECT", "BCC":
		word := strings.ToUpper(cmd)
		if !e.canDelegate(table, word) {
			return statusDunno, nil
		}
		if !strings.Contains(text, "@") {
			e.warnf("access table %s entry \"%s\" requires user@domain target", table, datum)
			return statusDunno, nil
		}
		e.logEvent(strings.ToLower(word), "<"+replyName+">: "+replyClass+" triggers "+word+" "+text)
		if word == "REDIRECT" {
			e.d.Effects.Redirect = text
		} else {
			e.d.Effects.BCC = append(e.d.Effects.BCC, text)
		}
		return statusDunno, nil
	case "DEFER_IF_PERMIT":
		dsn, t := splitDSN("4.7.1", text)
		return e.deferIfPermitArm(false, classPolicy, e.c.cfg.AccessMapDeferCode, fixDSN(dsn, replyClass),
			orDefault(t, "Service unavailable")), nil
	case "DEFER_IF_REJECT":
		dsn, t := splitDSN("4.7.1", text)
		e.deferIfRejectArm(classPolicy, e.c.cfg.AccessMapDeferCode, fixDSN(dsn, replyClass),
			orDefault(t, "Service unavailable"))
		return statusDunno, nil
	case "PREPEND":
		if !e.notInClientHelo(table, "PREPEND") {
			return statusDunno, nil
		}
		if e.stage == StageEndOfData {
			e.warnf("access table %s: action PREPEND must be used before smtpd_end_of_data_restrictions", table)
			return statusDunno, nil
		}
		if text == "" || !isHeader(text) {
			e.warnf("access table %s entry \"%s\" requires header: text", table, datum)
			return statusDunno, nil
		}
		e.d.Effects.Prepend = append(e.d.Effects.Prepend, text)
		return statusDunno, nil
	case "OK", "RELAY":
		return e.permit(ctx, cmd, replyClass, replyName, "from "+table), nil
	}
	// All digits: OK (pop-before-smtp timestamps).
	if allDigits(value) {
		return e.permit(ctx, value, replyClass, replyName, "from "+table), nil
	}
	// 4NN text or 5NN text: reject with that code.
	if len(cmd) == 3 && text != "" && (cmd[0] == '4' || cmd[0] == '5') && isDigit(cmd[1]) && isDigit(cmd[2]) {
		code := int(cmd[0]-'0')*100 + int(cmd[1]-'0')*10 + int(cmd[2]-'0')
		dsn, t := splitDSN(string(cmd[0])+".7.1", text)
		return e.reject(classPolicy, code, fixDSN(dsn, replyClass), orDefault(t, "Access denied")), nil
	}
	if strings.Contains(value, ":") {
		e.warnf("access table %s has entry with lookup table: %s", table, value)
		e.warnf("do not specify lookup tables inside SMTPD access maps")
		e.warnf("define a restriction class and specify its name instead.")
		return e.serverError()
	}
	if e.recursion > maxRecursion {
		e.warnf("access table %s entry %s causes unreasonable recursion", table, value)
		return e.serverError()
	}
	l := e.c.parseRuntime(value)
	if len(l) == 0 {
		e.warnf("access table %s entry %s has empty value", table, value)
		return statusOK, nil
	}
	return e.generic(ctx, l, replyName, replyClass, defACL)
}

// canDelegate says whether an action carried out by cleanup (FILTER, HOLD,
// DISCARD, REDIRECT, BCC) can be taken now: not for ETRN, and not before
// there is a transaction.
func (e *eval) canDelegate(table, action string) bool {
	if e.stage == StageETRN {
		e.warnf("access table %s: action %s is unavailable in smtpd_etrn_restrictions", table, action)
		return false
	}
	return e.notInClientHelo(table, action)
}

// notInClientHelo refuses transaction actions while there is no sender
// (client and HELO restrictions with smtpd_delay_reject = no).
func (e *eval) notInClientHelo(table, action string) bool {
	if !hasSender(e.stage) {
		e.warnf("access table %s: with smtpd_delay_reject=no, action %s is always skipped in Client host or Helo command restrictions", table, action)
		return false
	}
	return true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isHeader reports whether s starts with a header name and a colon
// (is_header): printable ASCII other than ':' and space, at least one.
func isHeader(s string) bool {
	i := 0
	for i < len(s) && s[i] > ' ' && s[i] < 0x7f && s[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i < len(s) && s[i] == ':'
}
