package config

import (
	"strings"
	"time"
)

// Reader reads many parameters in a row and keeps the first error, for the
// code that turns main.cf into a part's typed configuration. Errors name
// the parameter (and file and line when set in main.cf), as the getters'
// do.
type Reader struct {
	c   *Config
	err error
}

// NewReader reads from c.
func NewReader(c *Config) *Reader { return &Reader{c: c} }

// Config is the Config being read.
func (r *Reader) Config() *Config { return r.c }

// Keep records err unless an earlier error was recorded.
func (r *Reader) Keep(err error) {
	if err != nil && r.err == nil {
		r.err = err
	}
}

// Err is the first error recorded.
func (r *Reader) Err() error { return r.err }

// Str is the expanded value of name (Lookup).
func (r *Reader) Str(name string) string {
	v, _, err := r.c.Lookup(name)
	r.Keep(err)
	return v
}

// Bool is Config.Bool.
func (r *Reader) Bool(name string) bool {
	v, err := r.c.Bool(name)
	r.Keep(err)
	return v
}

// Int is Config.Int.
func (r *Reader) Int(name string) int {
	v, err := r.c.Int(name)
	r.Keep(err)
	return v
}

// Size is Config.Size.
func (r *Reader) Size(name string) int64 {
	v, err := r.c.Size(name)
	r.Keep(err)
	return v
}

// Duration is Config.Duration.
func (r *Reader) Duration(name string) time.Duration {
	v, err := r.c.Duration(name)
	r.Keep(err)
	return v
}

// List is the value of name split into items (SplitList).
func (r *Reader) List(name string) []string {
	return SplitList(r.Str(name))
}

// ParentStyle reports whether name is listed in
// parent_domain_matches_subdomains: then "example.com" in the tables and
// lists of name also matches its subdomains.
func (r *Reader) ParentStyle(name string) bool {
	for _, n := range r.List("parent_domain_matches_subdomains") {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
