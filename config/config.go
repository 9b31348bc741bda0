// Package config reads Postfix's main.cf the way Postfix 3.7 does: logical
// lines with continuations, "name = value" entries where the last one wins,
// values stored raw and expanded on use ($name, ${name?value}, the
// compatibility-level comparisons, ...), and the built-in default of every
// Postfix 3.7 parameter, including the ones computed from the host
// (myhostname, mydomain, mynetworks) and the ones that depend on
// compatibility_level. Typed getters read booleans, durations with each
// parameter's default unit, sizes and lists.
//
// A Config holds no global state and is safe for concurrent readers; Set
// must not run concurrently with readers.
//
//	cfg, err := config.Load("/etc/postfix")
//	limit, err := cfg.Size("message_size_limit")
//	for _, d := range cfg.List("mydestination") { ... }
//
// Reference: postconf(5), postconf(1).
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
)

// DefaultDir is the config directory Postfix uses when neither -c nor
// $MAIL_CONFIG names one.
const DefaultDir = "/etc/postfix"

// Warning is a non-fatal problem found in main.cf, as Postfix would log it.
// Line is 0 when the warning is about the file as a whole.
type Warning struct {
	File string
	Line int
	Text string
}

func (w Warning) String() string {
	switch {
	case w.File == "":
		return w.Text
	case w.Line == 0:
		return w.File + ": " + w.Text
	}
	return fmt.Sprintf("%s, line %d: %s", w.File, w.Line, w.Text)
}

// SyntaxError is a main.cf line Postfix refuses to read (a fatal error in
// Postfix), such as a line without '='.
type SyntaxError struct {
	File string
	Line int
	Msg  string // Postfix's text, e.g. `missing '=' after attribute name: "foo"`
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("config: %s line %d: %s", e.File, e.Line, e.Msg)
}

// ParamError is a parameter whose value cannot be expanded or converted.
type ParamError struct {
	File  string // main.cf, or "" for a built-in default
	Line  int    // 0 for a default or a programmatic Set
	Param string
	Value string // the raw value
	Err   error  // *ExpandError, or the conversion error
}

func (e *ParamError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, " line %d", e.Line)
		}
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "parameter %s: value %q: %v", e.Param, e.Value, e.Err)
	return b.String()
}

func (e *ParamError) Unwrap() error { return e.Err }

type entry struct {
	value string
	line  int
}

// Config is a main.cf file on top of Postfix's built-in defaults.
type Config struct {
	file    string
	entries map[string]entry
	order   []string // names in main.cf, in order of first appearance
	host    Host
	// hostSet is true once host is known: SystemHost is asked lazily,
	// since most programs never need a host-dependent default.
	hostSet bool

	// dir is the directory Load read main.cf from: the default of
	// config_directory, as "postfix -c DIR" makes it.
	dir string

	mu       sync.Mutex
	hostOnce sync.Once
	warnings []Warning
	// expanded caches Lookup's results; Set, Unset and SetHost clear it.
	expanded map[string]lookupResult
}

type lookupResult struct {
	value string
	err   error
}

// Default returns a Config with no main.cf: every parameter at its built-in
// default, as `postconf -d` shows them.
func Default() *Config {
	return &Config{entries: map[string]entry{}}
}

// Load reads dir/main.cf. Like postconf, a missing main.cf is an error
// (postconf: fatal: open DIR/main.cf: No such file or directory); test it
// with errors.Is(err, fs.ErrNotExist).
func Load(dir string) (*Config, error) {
	// Postfix joins with "/" even after a trailing slash; keep its spelling
	// so messages name the same file.
	name := dir + "/main.cf"
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := Parse(name, f)
	if err != nil {
		return nil, err
	}
	// Like "postfix -c DIR" (and MAIL_CONFIG), the directory becomes
	// config_directory's default, so "$config_directory/access" names a
	// file beside this main.cf; a setting in main.cf still wins.
	c.dir = dir
	return c, nil
}

// Parse reads main.cf text from r; filename is used in messages.
//
// postconf(5): a logical line starts with a non-whitespace character and
// goes on over every following line that starts with whitespace (appended
// as is, without the newline). Blank lines and lines whose first
// non-whitespace character is # are skipped and do not end a logical line.
// # starts a comment only at the start of a line. "name = value": spaces
// around = and at the ends of the value are dropped; a later entry for the
// same name overrides an earlier one, with a warning.
func Parse(filename string, r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", filename, err)
	}
	c := Default()
	c.file = filename
	for _, ll := range logicalLines(string(data)) {
		if ll.leading {
			c.warn(0, fmt.Sprintf("logical line must not start with whitespace: \"%s\"", ll.text))
			continue
		}
		name, value, msg := splitNameValue(ll.text)
		if msg != "" {
			return nil, &SyntaxError{File: filename, Line: ll.line, Msg: msg}
		}
		if old, ok := c.entries[name]; ok {
			// Postfix warns only when the value changes.
			if old.value != value {
				c.warn(ll.line, "overriding earlier entry: "+name+"="+printable(old.value))
			}
		} else {
			c.order = append(c.order, name)
		}
		c.entries[name] = entry{value: value, line: ll.line}
	}
	return c, nil
}

// logicalLine is one main.cf entry with the number of its first line.
type logicalLine struct {
	text    string
	line    int
	leading bool // started with whitespace at the start of the file
	// first and last physical line (1-based, inclusive), for editing.
	first, last int
}

const lineSpace = " \t\r\n"

// logicalLines joins continuation lines (src: util/readlline.c).
func logicalLines(data string) []logicalLine {
	var out []logicalLine
	var cur *logicalLine
	lines := splitLines(data)
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimRight(raw, "\n")
		t := strings.TrimLeft(line, lineSpace)
		if t == "" || t[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' || line[0] == '\r' {
			if cur != nil {
				cur.text += line
				cur.last = n
				continue
			}
			out = append(out, logicalLine{text: strings.TrimRight(line, lineSpace), line: n, leading: true, first: n, last: n})
			cur = &out[len(out)-1]
			continue
		}
		out = append(out, logicalLine{text: line, line: n, first: n, last: n})
		cur = &out[len(out)-1]
	}
	for i := range out {
		out[i].text = strings.TrimRight(out[i].text, lineSpace)
	}
	return out
}

// splitLines splits data after each newline, keeping the newlines; the
// last line may lack one.
func splitLines(data string) []string {
	var lines []string
	for data != "" {
		i := strings.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	return lines
}

// splitNameValue splits "name = value" (src: util/split_nameval.c).
func splitNameValue(s string) (name, value, msg string) {
	s = strings.Trim(s, lineSpace)
	i := 0
	for i < len(s) && strings.IndexByte(lineSpace+"=", s[i]) < 0 {
		i++
	}
	name = s[:i]
	if name == "" {
		return "", "", fmt.Sprintf("missing attribute name: \"%s\"", s)
	}
	rest := strings.TrimLeft(s[i:], lineSpace)
	if !strings.HasPrefix(rest, "=") {
		return "", "", fmt.Sprintf("missing '=' after attribute name: \"%s\"", s)
	}
	return name, strings.Trim(rest[1:], lineSpace), ""
}

// printable replaces bytes Postfix would not print in a log line with '?'.
func printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

func (c *Config) warn(line int, text string) {
	c.mu.Lock()
	c.warnings = append(c.warnings, Warning{File: c.file, Line: line, Text: text})
	c.mu.Unlock()
}

// File returns the name of the main.cf the Config was read from ("" for
// Default).
func (c *Config) File() string { return c.file }

// Warnings returns the warnings found so far: parse warnings, and
// "undefined parameter" warnings from expansions done by Get.
func (c *Config) Warnings() []Warning {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Warning(nil), c.warnings...)
}

// SetHost replaces the host facts (hostname, interface addresses) used for
// the defaults of myhostname, mydomain and mynetworks; tests use it.
func (c *Config) SetHost(h Host) {
	c.hostOnce.Do(func() {})
	c.host, c.hostSet = h, true
	c.invalidate()
}

// hostInfo returns the host facts, reading them from the system on first
// use.
func (c *Config) hostInfo() Host {
	c.hostOnce.Do(func() {
		if !c.hostSet {
			c.host, c.hostSet = SystemHost(), true
		}
	})
	return c.host
}

// invalidate drops the cached expansions after a change.
func (c *Config) invalidate() {
	c.mu.Lock()
	c.expanded = nil
	c.mu.Unlock()
}

// Set sets a parameter as if main.cf contained "name = value" (the value
// is stored raw, like main.cf values).
func (c *Config) Set(name, value string) {
	if _, ok := c.entries[name]; !ok {
		c.order = append(c.order, name)
	}
	c.entries[name] = entry{value: value}
	c.invalidate()
}

// Unset removes a parameter set in main.cf or with Set; it is back at its
// default.
func (c *Config) Unset(name string) {
	if _, ok := c.entries[name]; !ok {
		return
	}
	delete(c.entries, name)
	c.invalidate()
	for i, n := range c.order {
		if n == name {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

// IsSet reports whether main.cf (or Set) gives the parameter a value.
func (c *Config) IsSet(name string) bool {
	_, ok := c.entries[name]
	return ok
}

// Line returns the main.cf line number where name is set (0 if not set in
// the file).
func (c *Config) Line(name string) int { return c.entries[name].line }

// Names returns the names set in main.cf (or with Set), sorted.
func (c *Config) Names() []string {
	names := append([]string(nil), c.order...)
	sort.Strings(names)
	return names
}

// IsKnown reports whether name is a built-in Postfix 3.7 parameter.
func IsKnown(name string) bool {
	if _, ok := builtinDefaults[name]; ok {
		return true
	}
	return derivedParams[name]
}

// KnownNames returns every built-in parameter name, sorted.
func KnownNames() []string {
	names := make([]string, 0, len(builtinDefaults)+len(derivedParams))
	for n := range builtinDefaults {
		names = append(names, n)
	}
	for n := range derivedParams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// rawParams are the parameters Postfix never expands as main.cf values:
// their $names belong to a per-feature attribute set (postconf -x shows
// them unchanged).
var rawParams = map[string]bool{
	"command_execution_directory": true,
	"default_rbl_reply":           true,
	"forward_path":                true,
	"luser_relay":                 true,
	"mailbox_command":             true,
	"postscreen_expansion_filter": true,
	"postscreen_reject_footer":    true,
	"smtpd_expansion_filter":      true,
	"smtpd_reject_footer":         true,
}

// IsRaw reports whether Postfix leaves the parameter's value unexpanded.
func IsRaw(name string) bool { return rawParams[name] }

// readOnlyParams may not be set in main.cf; postconf warns and ignores
// such entries.
var readOnlyParams = map[string]bool{"process_id": true, "process_name": true, "service_name": true}

// IsReadOnly reports whether the parameter is read-only (process_id,
// process_name, service_name).
func IsReadOnly(name string) bool { return readOnlyParams[name] }

// Raw returns the unexpanded value: from main.cf if set there, else the
// built-in default. ok is false for a name that is neither.
func (c *Config) Raw(name string) (string, bool) {
	if e, ok := c.entries[name]; ok {
		return e.value, true
	}
	return c.DefaultValue(name)
}

// DefaultValue returns the built-in default of name, raw, as `postconf -d`
// prints it.
func (c *Config) DefaultValue(name string) (string, bool) {
	if name == "config_directory" && c.dir != "" {
		return c.dir, true
	}
	if v, ok := builtinDefaults[name]; ok {
		return v, true
	}
	if derivedParams[name] {
		return c.derivedDefault(name), true
	}
	return "", false
}

// Lookup returns the expanded value of name. ok is false when the name is
// neither set nor built in. Undefined names met on the way expand to "" and
// are recorded as warnings (once: results are cached until the next Set,
// Unset or SetHost).
func (c *Config) Lookup(name string) (value string, ok bool, err error) {
	c.mu.Lock()
	r, hit := c.expanded[name]
	c.mu.Unlock()
	if hit {
		return r.value, true, r.err
	}
	raw, ok := c.Raw(name)
	if !ok {
		return "", false, nil
	}
	r.value = raw
	if !rawParams[name] {
		r.value, err = c.Expand(raw)
		if err != nil {
			r.err = c.paramError(name, raw, err)
		}
	}
	c.mu.Lock()
	if c.expanded == nil {
		c.expanded = map[string]lookupResult{}
	}
	c.expanded[name] = r
	c.mu.Unlock()
	return r.value, true, r.err
}

func (c *Config) paramError(name, raw string, err error) *ParamError {
	pe := &ParamError{Param: name, Value: raw, Err: err}
	if e, ok := c.entries[name]; ok {
		pe.File, pe.Line = c.file, e.line
	}
	return pe
}

// Get returns the expanded value of name, or "" for an unknown name. On an
// expansion error it returns what was expanded before the error; use
// Lookup to see the error.
func (c *Config) Get(name string) string {
	v, _, _ := c.Lookup(name)
	return v
}

// Expand expands s against this Config's parameters, recursively, as
// Postfix expands main.cf values.
func (c *Config) Expand(s string) (string, error) {
	e := Expander{Lookup: c.Raw, Recursive: true, Undefined: func(n string) {
		c.warn(0, "undefined parameter: "+n)
	}}
	return e.Expand(s)
}

// ErrUnknown is returned by the typed getters for a name that is neither
// set nor built in.
var ErrUnknown = errors.New("unknown parameter")

func (c *Config) getForParse(name string) (string, error) {
	v, ok, err := c.Lookup(name)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &ParamError{Param: name, Err: ErrUnknown}
	}
	return v, nil
}
