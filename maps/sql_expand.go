package maps

import (
	"fmt"
	"strings"
)

// Query and result templates of the SQL tables (pgsql_table(5),
// mysql_table(5), sqlite_table(5), "query" and "result_format").
//
// Both templates share one set of flags, as in Postfix: when the
// result_format uses %D or %2, a key without that many domain labels is never
// looked up, because the result could not be formed anyway.

const (
	sqlKeyUser     = 1 << iota // the template needs the key's local part (%u, %U)
	sqlKeyDomain               // the template needs the key's domain (%d, %D, %1..%9)
	sqlValueUser               // result_format uses the result's local part (%u)
	sqlValueDomain             // result_format uses the result's domain (%d)
)

// sqlTemplates holds the parsed query and result_format templates.
type sqlTemplates struct {
	query  string
	result string
	flags  int
	nparts int // highest %1..%9 used in either template
}

// sqlParseTemplate checks one template and merges what it needs into t.
// isQuery selects the meaning of the lower-case %u and %d: the key's parts
// in a query, the result's parts in result_format.
func (t *sqlTemplates) sqlParseTemplate(format string, isQuery bool) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i >= len(format) {
			return fmt.Errorf("'%%' at the end of the template")
		}
		switch c := format[i]; c {
		case '%', 's', 'S':
		case 'u':
			if isQuery {
				t.flags |= sqlKeyUser
			} else {
				t.flags |= sqlValueUser
			}
		case 'd':
			if isQuery {
				t.flags |= sqlKeyDomain
			} else {
				t.flags |= sqlValueDomain
			}
		case 'U':
			t.flags |= sqlKeyUser
		case 'D':
			t.flags |= sqlKeyDomain
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			t.flags |= sqlKeyDomain
			if n := int(c - '0'); n > t.nparts {
				t.nparts = n
			}
		default:
			return fmt.Errorf("unknown expansion %%%c", c)
		}
	}
	return nil
}

// sqlSplitAddr splits s at its last '@'. hasAt is false when there is none.
func sqlSplitAddr(s string) (local, domain string, hasAt bool) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// sqlLabels returns the non-empty dot-separated labels of a domain: Postfix
// splits with a tokenizer that skips empty fields, so "a..b" has two labels.
func sqlLabels(domain string) []string {
	return strings.FieldsFunc(domain, func(r rune) bool { return r == '.' })
}

// sqlKeyEligible says whether the key carries every part the templates
// need: a key without a domain is not looked up when %d, %D or %1..%9 is
// used, a key with an empty local part ("@example.com") not when %u or %U
// is, and a domain with fewer labels than the highest %N not at all
// (pgsql_table(5), "query").
func (t *sqlTemplates) sqlKeyEligible(key string) bool {
	local, domain, hasAt := sqlSplitAddr(key)
	if t.flags&(sqlKeyUser|sqlKeyDomain) == 0 {
		return true
	}
	if t.flags&sqlKeyDomain != 0 && (!hasAt || domain == "") {
		return false
	}
	if t.flags&sqlKeyUser != 0 && hasAt && local == "" {
		return false
	}
	if t.nparts > 0 && len(sqlLabels(domain)) < t.nparts {
		return false
	}
	return true
}

// sqlExpandQuery expands the query template for key, quoting every piece of
// the key with quote. ok is false when the lookup must be skipped.
func (t *sqlTemplates) sqlExpandQuery(key string, quote func(string) string) (string, bool) {
	if key == "" || !t.sqlKeyEligible(key) {
		return "", false
	}
	var b strings.Builder
	t.sqlExpand(&b, t.query, key, key, quote)
	return b.String(), true
}

// sqlExpandResult appends one result value, formatted by result_format, to
// b (with a comma before it when b is not empty). It returns false when the
// value is skipped: NULL or empty values, and values lacking the local part
// or domain the format asks for (pgsql_table(5), "result_format").
func (t *sqlTemplates) sqlExpandResult(b *strings.Builder, value, key string) bool {
	if value == "" {
		return false
	}
	if t.flags&(sqlValueUser|sqlValueDomain) != 0 {
		local, domain, hasAt := sqlSplitAddr(value)
		if t.flags&sqlValueDomain != 0 && (!hasAt || domain == "") {
			return false
		}
		if t.flags&sqlValueUser != 0 && hasAt && local == "" {
			return false
		}
	}
	if !t.sqlKeyEligible(key) {
		return false
	}
	if b.Len() > 0 {
		b.WriteByte(',')
	}
	t.sqlExpand(b, t.result, value, key, nil)
	return true
}

// sqlExpand does the substitution. In a query, value is the key; in a
// result, the lower-case expansions take value and the upper-case and digit
// ones take key. The caller has checked that every needed part exists.
func (t *sqlTemplates) sqlExpand(b *strings.Builder, format, value, key string, quote func(string) string) {
	put := func(s string) {
		if quote != nil {
			s = quote(s)
		}
		b.WriteString(s)
	}
	vlocal, vdomain, _ := sqlSplitAddr(value)
	klocal, kdomain, _ := sqlSplitAddr(key)
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = format[i]; c {
		case '%':
			b.WriteByte('%')
		case 's':
			put(value)
		case 'u':
			put(vlocal)
		case 'd':
			put(vdomain)
		case 'S':
			put(key)
		case 'U':
			put(klocal)
		case 'D':
			put(kdomain)
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			labels := sqlLabels(kdomain)
			if n := int(c - '0'); n <= len(labels) {
				put(labels[len(labels)-n])
			}
		default:
			// Rejected when the template was parsed; keep it verbatim.
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
}

// sqlQuotePgSQL escapes s for a PostgreSQL string literal the way
// PQescapeStringConn does: quotes are doubled, and backslashes too unless
// the connection has standard_conforming_strings on. NUL cannot be sent to
// PostgreSQL at all; callers never pass it (keys holding NUL are not looked
// up), and it is dropped here as a last defence.
func sqlQuotePgSQL(s string, standardStrings bool) string {
	if !strings.ContainsAny(s, "'\\\x00") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			b.WriteString("''")
		case '\\':
			if standardStrings {
				b.WriteByte('\\')
			} else {
				b.WriteString(`\\`)
			}
		case 0:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sqlQuoteMySQL escapes s as mysql_real_escape_string does when the session
// does not use NO_BACKSLASH_ESCAPES (postkit turns that mode off for its
// sessions): NUL, newline, carriage return, backslash, both quotes and
// Ctrl-Z become backslash escapes. The result is safe inside '...' and
// "..." literals.
func sqlQuoteMySQL(s string) string {
	if !strings.ContainsAny(s, "\x00\n\r\\'\"\x1a") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '"':
			b.WriteString(`\"`)
		case 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sqlQuoteSQLite escapes s as sqlite3_mprintf's %q does: single quotes are
// doubled; nothing else is special in an SQLite string literal. NUL ends a C
// string, so it is dropped (keys holding NUL are never looked up).
func sqlQuoteSQLite(s string) string {
	if !strings.ContainsAny(s, "'\x00") {
		return s
	}
	s = strings.ReplaceAll(s, "\x00", "")
	return strings.ReplaceAll(s, "'", "''")
}
