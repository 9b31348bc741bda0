// Command postkit is postkit's admin command line: Postfix's postmap,
// postalias, newaliases, postconf, sendmail and the queue commands
// postqueue, postsuper, postcat and mailq, with their flags, output and
// exit codes.
//
//	postkit postmap -q KEY hash:/etc/postfix/virtual
//	postkit postconf -n
//	postkit postqueue -p
//	postkit postsuper -d ALL deferred
//
// Installed (or symlinked) under a Postfix command's name, it acts as that
// command: a link named postmap runs "postkit postmap".
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// A command runs with its arguments (without the command name) and returns
// its exit status.
type command func(args []string, stdin io.Reader, stdout, stderr io.Writer) int

var commands = map[string]command{
	"postmap":    postmapMain,
	"postalias":  postaliasMain,
	"newaliases": newaliasesMain,
	"postconf":   postconfMain,
	"sendmail":   sendmailMain,
	"mailq":      mailqMain,
	"postqueue":  postqueueMain,
	"postsuper":  postsuperMain,
	"postcat":    postcatMain,
}

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(argv) > 0 {
		if cmd, ok := commands[filepath.Base(argv[0])]; ok {
			return cmd(argv[1:], stdin, stdout, stderr)
		}
	}
	if len(argv) < 2 {
		usage(stderr)
		return 2
	}
	cmd, ok := commands[argv[1]]
	if !ok {
		fmt.Fprintf(stderr, "postkit: unknown command %q\n", argv[1])
		usage(stderr)
		return 2
	}
	return cmd(argv[2:], stdin, stdout, stderr)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: postkit COMMAND [ARGS...]")
	fmt.Fprintln(w, "commands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", n)
	}
}
