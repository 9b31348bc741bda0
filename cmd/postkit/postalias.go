package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// postaliasMain runs "postkit postalias ARGS...". See postalias(1): it is
// postmap over aliases(5) files ("name: value, value"), and prints query
// results as "name:<TAB>value". The same postkit rules apply as for postmap:
// hash:, btree:, lmdb: and dbm: aliases are read from the source file, cdb:
// aliases are written to FILE.cdb.
func postaliasMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return pmNewTool("postalias", true, stdin, stdout, stderr).main(args)
}

// pmSendmailArgOpts are the sendmail(1) options that take an argument;
// newaliases accepts sendmail's command line and ignores what does not
// concern it.
const pmSendmailArgOpts = "ABCFLNORVXbefhopqr"

// pmSendmailFlags are sendmail(1) options without an argument.
const pmSendmailFlags = "GIUcimntvx"

// newaliasesMain runs "postkit newaliases": build every table listed in
// alias_database (newaliases(1), sendmail(1) -bi), as "postalias TABLE" would.
// -C DIR (or -C DIR/main.cf) picks the configuration directory; otherwise
// $MAIL_CONFIG or /etc/postfix. Problems are reported under the name
// postalias, as Postfix's newaliases does.
func newaliasesMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dir := ""
	verbose := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			// Sendmail's recipients; newaliases has none to send to.
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch {
			case strings.IndexByte(pmSendmailArgOpts, c) >= 0:
				var arg string
				switch {
				case j+1 < len(a):
					arg = a[j+1:]
				case i+1 < len(args):
					i++
					arg = args[i]
				default:
					fmt.Fprintf(stderr, "newaliases: option requires an argument -- '%c'\n", c)
					fmt.Fprintln(stderr, "newaliases: fatal: usage: newaliases [options]")
					return 75
				}
				j = len(a)
				if c == 'C' {
					dir = arg
					if st, err := os.Stat(arg); err == nil && !st.IsDir() {
						dir = filepath.Dir(arg)
					}
				}
			case strings.IndexByte(pmSendmailFlags, c) >= 0:
				if c == 'v' {
					verbose++
				}
			default:
				fmt.Fprintf(stderr, "newaliases: invalid option -- '%c'\n", c)
				fmt.Fprintln(stderr, "newaliases: fatal: usage: newaliases [options]")
				return 75
			}
		}
	}
	if dir == "" {
		dir = os.Getenv("MAIL_CONFIG")
	}
	if dir == "" {
		dir = "/etc/postfix"
	}
	// Postfix's newaliases shows no main.cf warnings, from itself or from
	// the postalias it runs.
	conf, err := pmLoadConfig(dir, func(string) {})
	if err != nil {
		fmt.Fprintf(stderr, "newaliases: fatal: %s\n", pmConfigError(dir, err))
		return 75
	}
	tables := strings.FieldsFunc(conf.Get("alias_database"), func(c rune) bool {
		return c == ',' || c == ' ' || c == '\t' || c == '\n'
	})
	if len(tables) == 0 {
		return 0
	}
	// One postalias run over all tables, as sendmail -bi does: a fatal
	// error stops it.
	pa := append([]string{"-c", dir}, tables...)
	pt := pmNewTool("postalias", true, stdin, stdout, stderr)
	pt.quietConfig = true
	if code := pt.main(pa); code != 0 {
		return 75
	}
	return 0
}
