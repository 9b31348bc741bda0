package restrictions

import (
	"context"
	"strings"

	"github.com/postkit-mail/postkit/maps"
)

// maxRecursion bounds nested restriction classes and access-table values
// that name restriction lists (smtpd_check.c stops at 100).
const maxRecursion = 100

// argKind says what, if anything, a restriction takes as its argument:
// the next element of the list.
type argKind int

const (
	argNone   argKind = iota
	argTable          // check_*_access type:name
	argDomain         // reject_rbl_client zone[=filter], permit_dnswl_client ...
	argNumber         // sleep N
	argPolicy         // check_policy_service inet:host:port or { ... }
)

// status is the result of one restriction.
type status int

const (
	statusDunno  status = iota // no decision: go on
	statusOK                   // permit: this list ends with success
	statusReject               // reject: the stage ends with e.reply
)

// builtin is a restriction implemented in this package.
type builtin struct {
	arg argKind
	run func(ctx context.Context, e *eval, el *elem) (status, error)
}

// elem is one parsed element of a restriction list.
type elem struct {
	name  string   // lower-cased restriction name; "" for a bare type:table
	raw   string   // the name as written
	arg   string   // the argument element, when the restriction takes one
	noArg bool     // the restriction needs an argument and the list has none
	table maps.Map // the opened table for argTable restrictions and bare tables
	impl  *builtin // nil: a class, a Func, or an unknown name
}

type rlist []elem

// splitList splits a restriction list at commas and whitespace, keeping
// "{...}" groups (inline tables, policy service settings) whole, like
// Postfix's mystrtokq with the brace pair.
func splitList(s string) []string {
	var out []string
	depth := 0
	start := -1
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '{':
			depth++
			if start < 0 {
				start = i
			}
		case ch == '}':
			if depth > 0 {
				depth--
			}
			if start < 0 {
				start = i
			}
		case depth == 0 && (ch == ',' || ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// parseList turns a restriction list into elements, opening the tables it
// names. Nothing here fails: like Postfix, an unknown name or a missing
// argument is found when the list is evaluated, and answers 451 4.3.5
// then.
func (c *Checker) parseList(ctx context.Context, text string) rlist {
	return c.parse(ctx, text, false)
}

// parse does parseList's work; at run time (lists from table values) it
// never opens a table, as those lists cannot name any.
func (c *Checker) parse(ctx context.Context, text string, runtime bool) rlist {
	toks := splitList(text)
	var l rlist
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		el := elem{raw: tok, name: strings.ToLower(tok)}
		if strings.HasPrefix(tok, "{") || strings.Contains(tok, ":") {
			// A bare table is short for check_<stage>_access table.
			el.name = ""
			el.arg = tok
			if !runtime {
				el.table = c.table(ctx, tok)
			}
			l = append(l, el)
			continue
		}
		el.impl = c.lookupBuiltin(el.name)
		if el.impl != nil && el.impl.arg != argNone {
			if i+1 < len(toks) {
				i++
				el.arg = toks[i]
				if el.impl.arg == argTable && !runtime && strings.Contains(el.arg, ":") {
					el.table = c.table(ctx, el.arg)
				}
			} else {
				el.noArg = true
			}
		}
		l = append(l, el)
	}
	return l
}

// parseRuntime parses a restriction list found in an access table value
// or a policy reply. Such lists may not name tables (the caller checked).
func (c *Checker) parseRuntime(text string) rlist {
	if v, ok := c.runtimeLists.Load(text); ok {
		return v.(rlist)
	}
	l := c.parse(context.Background(), text, true)
	c.runtimeLists.Store(text, l)
	return l
}

// lookupBuiltin finds a built-in restriction by lower-cased name.
func (c *Checker) lookupBuiltin(name string) *builtin {
	return c.builtins[name]
}

// allBuiltins merges the families of built-in restrictions; each file that
// implements a family contributes one map. (Only New calls this: the maps
// refer to the evaluator, which must not refer back to them.)
func allBuiltins() map[string]*builtin {
	all := map[string]*builtin{}
	for _, set := range []map[string]*builtin{coreBuiltins, accessBuiltins, dnsBuiltins, destBuiltins, policyBuiltins} {
		for k, v := range set {
			all[k] = v
		}
	}
	return all
}
