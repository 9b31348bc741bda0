package main

// A small main.cf reader for postmap, postalias and newaliases: they need
// only default_database_type, alias_database and smtputf8_enable. It stands in
// until package config lands; pmLoadConfig is the one function to swap.

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// pmConfig holds main.cf parameters as written, with the few defaults the
// table commands need.
type pmConfig struct {
	dir    string
	params map[string]string
}

// pmDefaults are Postfix 3.7's built-in values of the parameters these
// commands read (postconf -d).
var pmDefaults = map[string]string{
	"default_database_type": "hash",
	"alias_database":        "hash:/etc/aliases",
	"smtputf8_enable":       "yes",
}

// pmLoadConfig reads DIR/main.cf. A missing file is an error, as in Postfix
// ("open DIR/main.cf: No such file or directory").
func pmLoadConfig(dir string) (*pmConfig, error) {
	f, err := os.Open(filepath.Join(dir, "main.cf"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := &pmConfig{dir: dir, params: map[string]string{"config_directory": dir}}
	// postconf(5): a logical line starts at a non-blank line; a line that
	// starts with whitespace continues it; # starts a comment only at the
	// start of a line. The last definition of a parameter wins.
	var logical strings.Builder
	flush := func() {
		line := logical.String()
		logical.Reset()
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return
		}
		name = strings.TrimSpace(name)
		if name == "" {
			return
		}
		c.params[name] = strings.TrimSpace(value)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			logical.WriteByte(' ')
			logical.WriteString(trimmed)
			continue
		}
		flush()
		logical.WriteString(trimmed)
	}
	flush()
	return c, sc.Err()
}

// Get returns the expanded value of a parameter: main.cf's value, else the
// built-in default. $name and ${name} are expanded (one level per name, with
// a depth limit against loops).
func (c *pmConfig) Get(name string) string {
	return c.expand(c.raw(name), 0)
}

func (c *pmConfig) raw(name string) string {
	if v, ok := c.params[name]; ok {
		return v
	}
	return pmDefaults[name]
}

func (c *pmConfig) expand(s string, depth int) string {
	if depth > 20 || !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		rest := s[i+1:]
		var name string
		switch rest[0] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{', '(':
			closer := byte('}')
			if rest[0] == '(' {
				closer = ')'
			}
			end := strings.IndexByte(rest, closer)
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name = rest[1:end]
			i += end + 1
		default:
			n := 0
			for n < len(rest) && (rest[n] == '_' || rest[n] >= 'a' && rest[n] <= 'z' || rest[n] >= 'A' && rest[n] <= 'Z' || rest[n] >= '0' && rest[n] <= '9') {
				n++
			}
			if n == 0 {
				b.WriteByte('$')
				continue
			}
			name = rest[:n]
			i += n
		}
		b.WriteString(c.expand(c.raw(name), depth+1))
	}
	return b.String()
}
