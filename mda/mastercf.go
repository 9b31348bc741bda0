package mda

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Service is one master.cf entry (master(5)):
//
//	service type  private unpriv  chroot  wakeup  maxproc command + args
//	dovecot unix  -       n       n       -       -       pipe
//	  flags=DRhu user=vmail argv=/usr/lib/dovecot/deliver -d ${recipient}
//
// postkit runs no daemons per service, so most columns are only kept for
// tools that print the file; what matters to delivery is the name (the
// transport name in transport_maps), the command (the agent kind:
// "smtp", "lmtp", "local", "virtual", "pipe", "error", "discard",
// "retry"...), its -o overrides and, for pipe, its arguments.
type Service struct {
	// Name is the service name: a transport name for unix services,
	// [host:]port for inet ones.
	Name string
	// Type is inet, unix, unix-dgram, fifo or pass.
	Type string
	// Private, Unpriv and Chroot are the y/n columns; "-" gives the
	// default (y, y, and n since Postfix 3.0).
	Private, Unpriv, Chroot bool
	// Wakeup is the wakeup time in seconds (0 = none); WakeupIfUsed is
	// the "?" suffix.
	Wakeup       int
	WakeupIfUsed bool
	// MaxProc is the process limit; -1 means "-" (default_process_limit).
	MaxProc int
	// Command is the program name (the agent kind).
	Command string
	// Args are the command's arguments without the leading -o options,
	// with "{ ... }" groups unwrapped into one argument each.
	Args []string
	// Options are the -o name=value overrides of main.cf parameters, in
	// file order in OptionOrder.
	Options     map[string]string
	OptionOrder []string
	// File and Line say where the entry starts, for error messages.
	File string
	Line int
}

// Option returns the -o override of name and whether there is one.
func (s Service) Option(name string) (string, bool) {
	v, ok := s.Options[name]
	return v, ok
}

// ReadMasterCF reads a master.cf file.
func ReadMasterCF(path string) ([]Service, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mda: %w", err)
	}
	defer f.Close()
	return ParseMasterCF(path, f)
}

// maxMasterLine bounds a logical line, so a file without newlines cannot
// make the parser hold the whole of it.
const maxMasterLine = 1 << 20

// ParseMasterCF parses master.cf text; name is used in errors ("mda:
// /etc/postfix/master.cf line 12: ..."). A logical line starts with
// non-whitespace text; lines that start with whitespace continue it;
// blank lines and lines whose first non-whitespace character is '#' are
// comments, also between continuation lines (master(5)). Two entries
// with the same name and type are an error, as in Postfix.
func ParseMasterCF(name string, r io.Reader) ([]Service, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxMasterLine)
	var (
		out     []Service
		cur     strings.Builder
		curLine int
		n       int
	)
	seen := map[string]int{}
	flush := func() error {
		if curLine == 0 {
			return nil
		}
		svc, err := parseEntry(cur.String())
		if err != nil {
			return fmt.Errorf("mda: %s line %d: %w", name, curLine, err)
		}
		svc.File, svc.Line = name, curLine
		key := svc.Name + "/" + svc.Type
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("mda: %s line %d: duplicate service %q type %s (first at line %d)", name, curLine, svc.Name, svc.Type, prev)
		}
		seen[key] = curLine
		out = append(out, svc)
		cur.Reset()
		curLine = 0
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if bytes.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("mda: %s line %d: NUL character", name, n)
		}
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) == 0 || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if curLine == 0 {
				return nil, fmt.Errorf("mda: %s line %d: continuation line without an entry before it", name, n)
			}
			if cur.Len()+len(trimmed) > maxMasterLine {
				return nil, fmt.Errorf("mda: %s line %d: entry longer than %d bytes", name, curLine, maxMasterLine)
			}
			cur.WriteByte(' ')
			cur.Write(trimmed)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		curLine = n
		cur.Write(trimmed)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mda: %s line %d: %w", name, n+1, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

var serviceTypes = map[string]bool{"inet": true, "unix": true, "unix-dgram": true, "fifo": true, "pass": true}

// parseEntry parses one logical line.
func parseEntry(line string) (Service, error) {
	words, err := splitArgs(line)
	if err != nil {
		return Service{}, err
	}
	f := make([]string, len(words))
	for i, w := range words {
		f[i] = w.text
	}
	if len(f) < 8 {
		return Service{}, fmt.Errorf("want at least 8 fields (service type private unpriv chroot wakeup maxproc command), got %d", len(f))
	}
	s := Service{Name: f[0], Type: f[1], Command: f[7]}
	if strings.ContainsAny(s.Name, "{}") || s.Name == "" {
		return s, fmt.Errorf("bad service name %q", s.Name)
	}
	if !serviceTypes[s.Type] {
		return s, fmt.Errorf("service %s: bad transport type %q (want inet, unix, unix-dgram, fifo or pass)", s.Name, s.Type)
	}
	yn := func(col, v string, def bool) (bool, error) {
		switch v {
		case "-":
			return def, nil
		case "y":
			return true, nil
		case "n":
			return false, nil
		}
		return false, fmt.Errorf("service %s: bad %s field %q (want y, n or -)", s.Name, col, v)
	}
	if s.Private, err = yn("private", f[2], true); err != nil {
		return s, err
	}
	if s.Unpriv, err = yn("unprivileged", f[3], true); err != nil {
		return s, err
	}
	if s.Chroot, err = yn("chroot", f[4], false); err != nil {
		return s, err
	}
	if w := f[5]; w != "-" {
		if strings.HasSuffix(w, "?") {
			s.WakeupIfUsed = true
			w = w[:len(w)-1]
		}
		if s.Wakeup, err = strconv.Atoi(w); err != nil || s.Wakeup < 0 || !allDigits(w) {
			return s, fmt.Errorf("service %s: bad wakeup time %q", s.Name, f[5])
		}
	}
	s.MaxProc = -1
	if f[6] != "-" {
		if s.MaxProc, err = strconv.Atoi(f[6]); err != nil || !allDigits(f[6]) {
			return s, fmt.Errorf("service %s: bad process limit %q", s.Name, f[6])
		}
	}
	if s.Command == "" {
		return s, fmt.Errorf("service %s: empty command", s.Name)
	}
	// -o options are the daemon's getopt options: only those before the
	// first argument that is not an option count (as postconf -P reads
	// them); "-o x=y" after "argv=" belongs to a pipe command.
	args := f[8:]
	options := true
	for i := 0; i < len(args); i++ {
		a := args[i]
		if options && (words[8+i].grouped || !strings.HasPrefix(a, "-") || a == "--") {
			options = false
		}
		if !options || !strings.HasPrefix(a, "-o") {
			s.Args = append(s.Args, a)
			continue
		}
		var nv string
		if a == "-o" {
			if i+1 >= len(args) {
				return s, fmt.Errorf("service %s: -o without name=value", s.Name)
			}
			i++
			nv = args[i]
		} else {
			nv = a[2:]
		}
		name, value, ok := strings.Cut(nv, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return s, fmt.Errorf("service %s: bad -o option %q (want name=value)", s.Name, nv)
		}
		if s.Options == nil {
			s.Options = map[string]string{}
		}
		if _, dup := s.Options[name]; !dup {
			s.OptionOrder = append(s.OptionOrder, name)
		}
		s.Options[name] = value
	}
	return s, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// word is one word of a master.cf line; grouped says it was in { }.
type word struct {
	text    string
	grouped bool
}

// splitArgs splits a master.cf logical line into words at whitespace.
// A word starting with '{' runs to the matching '}' and may hold
// whitespace; the braces and the whitespace just inside them are removed
// ("{ a b }" is "a b"), as in Postfix 3.0 and later. "-o { name = value }"
// is one option.
func splitArgs(line string) ([]word, error) {
	var out []word
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			return out, nil
		}
		if line[i] == '{' {
			depth, j := 0, i
			for ; j < len(line); j++ {
				if line[j] == '{' {
					depth++
				} else if line[j] == '}' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(line) {
				return nil, fmt.Errorf("missing '}' after %q", line[i:])
			}
			if j+1 < len(line) && line[j+1] != ' ' && line[j+1] != '\t' {
				return nil, fmt.Errorf("text %q after '}'", line[j+1:])
			}
			out = append(out, word{strings.TrimSpace(line[i+1 : j]), true})
			i = j + 1
			continue
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		out = append(out, word{line[i:j], false})
		i = j
	}
}
