package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// pcUsage is postconf's usage line, printed after a bad option.
const pcUsage = "usage: postconf [-c config_dir] [-d (parameter defaults)] [-e (edit configuration)] [-h (no names)] [-m (map types)] [-n (non-default parameters)] [-x (expand parameter values)] [-X (exclude)] [-# (comment-out)] [name...]"

// pcFlags are the parsed postconf options.
type pcFlags struct {
	dir                   string
	dirGiven              bool
	d, n, x, h, m         bool
	edit, remove, comment bool
	order                 []byte // option letters in the order given
	names                 []string
}

// pcFatal is a postconf fatal error: message printed, exit status 1.
type pcFatal struct{ msg string }

func (e *pcFatal) Error() string { return e.msg }

// pcParseFlags parses the command line like getopt(3) with GNU argument
// permutation: options may follow names, "--" ends them.
func pcParseFlags(args []string, stderr io.Writer) (*pcFlags, error) {
	f := &pcFlags{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			f.names = append(f.names, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			f.names = append(f.names, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch c {
			case 'c':
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						fmt.Fprintf(stderr, "postconf: option requires an argument -- 'c'\n")
						return nil, &pcFatal{pcUsage}
					}
					i++
					v = args[i]
				}
				f.dir, f.dirGiven = v, true
				j = len(a)
				continue
			case 'd':
				f.d = true
			case 'n':
				f.n = true
			case 'x':
				f.x = true
			case 'h':
				f.h = true
			case 'm':
				f.m = true
			case 'e':
				f.edit = true
			case 'X':
				f.remove = true
			case '#':
				f.comment = true
			default:
				fmt.Fprintf(stderr, "postconf: invalid option -- '%c'\n", c)
				return nil, &pcFatal{pcUsage}
			}
			f.order = append(f.order, c)
		}
	}
	// "postconf name=value" implies -e.
	if !f.edit {
		for _, n := range f.names {
			if strings.Contains(n, "=") {
				f.edit = true
				f.order = append(f.order, 'e')
				break
			}
		}
	}
	return f, pcCheckFlags(f)
}

// pcCheckFlags rejects option combinations postconf rejects.
func pcCheckFlags(f *pcFlags) error {
	editModes := ""
	for _, m := range []struct {
		on bool
		c  string
	}{{f.edit, "e"}, {f.remove, "X"}, {f.comment, "#"}} {
		if m.on {
			editModes += m.c
		}
	}
	if len(editModes) > 1 {
		return &pcFatal{fmt.Sprintf("specify one of -%c -%c", editModes[0], editModes[1])}
	}
	if f.m {
		for _, c := range f.order {
			if c != 'm' {
				return &pcFatal{fmt.Sprintf("with option -m, do not specify -%c", c)}
			}
		}
	}
	if editModes != "" {
		for _, c := range f.order {
			if strings.IndexByte("dnxh", c) >= 0 {
				return &pcFatal{fmt.Sprintf("specify one of -%s -%c", editModes, c)}
			}
		}
	}
	if f.d && f.n {
		return &pcFatal{"specify one of -d -n"}
	}
	return nil
}

// postconfMain is postkit's postconf(1): print main.cf parameters
// (all, -n the ones set in main.cf, -d the defaults; -x expanded, -h values
// only), edit main.cf (-e name=value, -X name, -# name), or list the
// lookup table types (-m).
func postconfMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stderr = pcPrintable{stderr}
	err := pcRun(args, stdout, stderr)
	if err == nil {
		return 0
	}
	var fatal *pcFatal
	if errors.As(err, &fatal) {
		fmt.Fprintf(stderr, "postconf: fatal: %s\n", fatal.msg)
	} else {
		fmt.Fprintf(stderr, "postconf: fatal: %v\n", err)
	}
	return 1
}

func pcRun(args []string, stdout, stderr io.Writer) error {
	f, err := pcParseFlags(args, stderr)
	if err != nil {
		return err
	}
	if !f.dirGiven {
		f.dir = config.DefaultDir
		if env := os.Getenv("MAIL_CONFIG"); env != "" {
			f.dir = env
		}
	}
	if f.m {
		types := maps.NewRegistry().Types()
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintln(stdout, t)
		}
		return nil
	}
	if f.edit || f.remove || f.comment {
		return pcEdit(f, stderr)
	}
	var cfg *config.Config
	var known func(string) bool
	if f.d {
		cfg = config.Default()
		known = config.IsKnown
	} else {
		cfg, known, err = pcLoad(f.dir, stderr)
		if err != nil {
			return err
		}
	}
	return pcPrint(f, cfg, known, stdout, stderr)
}

// pcOSError renders an OS error the way Postfix does (strerror text).
func pcOSError(op, name string, err error) error {
	var errno syscall.Errno
	text := err.Error()
	if errors.As(err, &errno) {
		text = errno.Error()
	}
	if text != "" {
		text = strings.ToUpper(text[:1]) + text[1:]
	}
	return &pcFatal{fmt.Sprintf("%s %s: %s", op, name, text)}
}

// pcLoad reads DIR/main.cf as postconf does and decides which names are
// parameters: built-in ones, and user-defined ones that some other value
// refers to as $name (or that smtpd_restriction_classes lists).
func pcLoad(dir string, stderr io.Writer) (*config.Config, func(string) bool, error) {
	file := dir + "/main.cf"
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, pcOSError("open", file, err)
	}
	cfg, err := config.Parse(file, strings.NewReader(string(data)))
	if err != nil {
		var se *config.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, &pcFatal{fmt.Sprintf("%s, line %d: %s", file, se.Line, se.Msg)}
		}
		return nil, nil, err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "postconf: warning: %s\n", w)
	}
	if dir != config.DefaultDir {
		// Postfix records the -c / $MAIL_CONFIG directory before reading
		// main.cf, so a main.cf setting overrides it with a warning.
		if cfg.IsSet("config_directory") {
			fmt.Fprintf(stderr, "postconf: warning: %s, line %d: overriding earlier entry: config_directory=%s\n", file, cfg.Line("config_directory"), dir)
		} else {
			cfg.Set("config_directory", dir)
		}
	}

	for _, name := range pcFileOrder(cfg) {
		if config.IsReadOnly(name) {
			v, _ := cfg.Raw(name)
			fmt.Fprintf(stderr, "postconf: warning: %s: read-only parameter assignment: %s=%s\n", file, name, v)
			cfg.Unset(name)
		}
	}
	// Postfix evaluates a few parameters while it starts up, when only
	// main.cf settings are defined (see config.ExpandStartup): an unset
	// compatibility_level is empty there, so a <level comparison with it
	// is malformed, and an expansion error is reported from the
	// dictionary layer.
	for _, name := range pcEarlyParams {
		if !cfg.IsSet(name) {
			continue
		}
		if _, err := cfg.ExpandStartup(pcRaw(cfg, name)); err != nil {
			fmt.Fprintf(stderr, "postconf: warning: %v\n", err)
			return nil, nil, &pcFatal{"dictionary mail_dict: macro processing error"}
		}
	}
	// The values of built-in parameters must expand; postconf stops on
	// the first that does not. User-defined ones are expanded only when
	// printed with -x.
	for _, name := range pcFileOrder(cfg) {
		if !config.IsKnown(name) || config.IsRaw(name) {
			continue
		}
		if _, err := (&config.Expander{Lookup: cfg.Raw, Recursive: true}).Expand(pcRaw(cfg, name)); err != nil {
			fmt.Fprintf(stderr, "postconf: warning: %v\n", err)
			return nil, nil, &pcFatal{"macro processing error"}
		}
	}
	if !cfg.IsSet("mynetworks") {
		if _, err := cfg.NetworksDefault(); err != nil {
			return nil, nil, &pcFatal{err.Error()}
		}
	}
	// Postfix looks for the user-defined parameters in use (and warns
	// about undefined ones) only once the built-in ones are known good.
	user := map[string]bool{}
	flag := func(name string) {
		if cfg.IsSet(name) {
			user[name] = true
		} else if !config.IsKnown(name) {
			fmt.Fprintf(stderr, "postconf: warning: %s: undefined parameter: %s\n", file, name)
		}
	}
	if v, err := cfg.Expand(pcRaw(cfg, "smtpd_restriction_classes")); err == nil {
		for _, n := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(", \t\r\n", r) }) {
			flag(n)
		}
	}
	for _, name := range pcFileOrder(cfg) {
		if config.IsRaw(name) {
			continue
		}
		v, _ := cfg.Raw(name)
		refs, err := config.References(v)
		for _, r := range refs {
			flag(r)
		}
		if err != nil {
			fmt.Fprintf(stderr, "postconf: warning: %v\n", err)
		}
	}
	known := func(name string) bool { return config.IsKnown(name) || user[name] }

	return cfg, known, nil
}

// pcEarlyParams are the parameters Postfix 3.7's postconf evaluates at
// start-up, before compatibility_level (found by experiment: a <level
// comparison with $compatibility_level in any other parameter works).
var pcEarlyParams = []string{"myhostname", "mydomain", "inet_interfaces", "inet_protocols", "mynetworks_style", "smtpd_restriction_classes"}

// pcFileOrder lists the names set in main.cf in file order.
func pcFileOrder(cfg *config.Config) []string {
	names := cfg.Names()
	sort.SliceStable(names, func(i, j int) bool { return cfg.Line(names[i]) < cfg.Line(names[j]) })
	return names
}

func pcRaw(cfg *config.Config, name string) string {
	v, _ := cfg.Raw(name)
	return v
}

// pcPrint prints the parameters selected by the flags.
func pcPrint(f *pcFlags, cfg *config.Config, known func(string) bool, stdout, stderr io.Writer) error {
	var names []string
	switch {
	case len(f.names) > 0:
		names = f.names
	case f.n:
		for _, n := range cfg.Names() {
			if known(n) {
				names = append(names, n)
			}
		}
	default:
		seen := map[string]bool{}
		for _, n := range config.KnownNames() {
			seen[n] = true
			names = append(names, n)
		}
		if !f.d {
			for _, n := range cfg.Names() {
				if known(n) && !seen[n] {
					names = append(names, n)
				}
			}
		}
		sort.Strings(names)
	}
	var out strings.Builder
	for _, name := range names {
		if !known(name) {
			fmt.Fprintf(stderr, "postconf: warning: %s: unknown parameter\n", name)
			continue
		}
		if f.n && !cfg.IsSet(name) {
			continue
		}
		var value string
		if f.d {
			value, _ = cfg.DefaultValue(name)
		} else {
			value, _ = cfg.Raw(name)
		}
		if name == "mynetworks" && (f.d || !cfg.IsSet(name)) {
			v, err := cfg.NetworksDefault()
			if err != nil {
				pcFlushed(stdout, out.String())
				return &pcFatal{err.Error()}
			}
			value = v
		}
		if f.x && !config.IsRaw(name) {
			v, err := cfg.Expand(value)
			if err != nil {
				pcFlushed(stdout, out.String())
				fmt.Fprintf(stderr, "postconf: warning: %v\n", err)
				return &pcFatal{"macro processing error"}
			}
			value = v
		}
		value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return strings.ContainsRune(" \t\r\n", r) }), " ")
		switch {
		case f.h:
			out.WriteString(value + "\n")
		case value == "":
			out.WriteString(name + " =\n")
		default:
			out.WriteString(name + " = " + value + "\n")
		}
	}
	if _, err := io.WriteString(stdout, out.String()); err != nil {
		return err
	}
	if !f.d {
		for _, name := range pcFileOrder(cfg) {
			if !known(name) {
				v, _ := cfg.Raw(name)
				fmt.Fprintf(stderr, "postconf: warning: %s: unused parameter: %s=%s\n", cfg.File(), name, v)
			}
		}
	}
	return nil
}

// pcStdoutBuffer is the size of Postfix's stdout buffer (VSTREAM_BUFSIZE).
const pcStdoutBuffer = 4096

// pcFlushed writes what Postfix's postconf has written to stdout when a
// fatal error ends it after it produced text: a fatal error exits without
// flushing the stdout buffer, so only the full buffers that an earlier
// write pushed out appear (postconf -x a b, where b fails, prints
// nothing).
func pcFlushed(stdout io.Writer, text string) {
	if n := len(text); n > 0 {
		io.WriteString(stdout, text[:(n-1)/pcStdoutBuffer*pcStdoutBuffer])
	}
}

// pcPrintable is stderr as Postfix's msg_vstream writes it: control
// characters in a message become '?'.
type pcPrintable struct{ w io.Writer }

func (p pcPrintable) Write(b []byte) (int, error) {
	c := make([]byte, len(b))
	for i, ch := range b {
		if ch < 0x20 && ch != '\n' || ch == 0x7f {
			ch = '?'
		}
		c[i] = ch
	}
	if _, err := p.w.Write(c); err != nil {
		return 0, err
	}
	return len(b), nil
}

// pcEdit runs -e, -X and -#.
func pcEdit(f *pcFlags, stderr io.Writer) error {
	if len(f.names) == 0 {
		if f.edit {
			return &pcFatal{"-e requires name=value argument"}
		}
		return &pcFatal{"missing service argument"}
	}
	var edits []config.Edit
	index := map[string]int{}
	for _, arg := range f.names {
		e := config.Edit{Name: arg}
		switch {
		case f.edit:
			name, value, err := config.ParseAssignment(arg)
			if err != nil {
				var se *config.SyntaxError
				errors.As(err, &se)
				return &pcFatal{se.Msg}
			}
			e = config.Edit{Op: config.EditSet, Name: name, Value: value}
		case f.remove:
			e.Op = config.EditRemove
		default:
			e.Op = config.EditComment
		}
		if i, dup := index[e.Name]; dup {
			if f.edit {
				fmt.Fprintf(stderr, "postconf: warning: ignoring earlier request: '%s = %s'\n", edits[i].Name, edits[i].Value)
			}
			edits[i] = e
			continue
		}
		index[e.Name] = len(edits)
		edits = append(edits, e)
	}
	file := f.dir + "/main.cf"
	if _, err := os.Stat(file); err != nil {
		return pcOSError("open", file+" for reading", err)
	}
	warnings, err := config.EditFile(file, edits)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "postconf: warning: %s\n", w)
	}
	return err
}
