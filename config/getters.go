package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSyntax is wrapped by the typed getters' errors when a value does not
// have the form the parameter needs.
var ErrSyntax = errors.New("bad value")

func (c *Config) convError(name, value, what string) error {
	pe := c.paramError(name, value, fmt.Errorf("%w: %s", ErrSyntax, what))
	return pe
}

// Bool reads a yes/no parameter (case-insensitive, as Postfix's
// get_mail_conf_bool).
func (c *Config) Bool(name string) (bool, error) {
	v, err := c.getForParse(name)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, c.convError(name, v, "want yes or no")
}

// Int reads an integer parameter.
func (c *Config) Int(name string) (int, error) {
	v, err := c.getForParse(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, c.convError(name, v, "want an integer")
	}
	return n, nil
}

// Size reads a byte-count parameter (message_size_limit,
// mailbox_size_limit, ...): a decimal number of bytes, 0 often meaning "no
// limit".
func (c *Config) Size(name string) (int64, error) {
	v, err := c.getForParse(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, c.convError(name, v, "want a number of bytes")
	}
	return n, nil
}

// DefaultUnit returns the time unit a bare number has for the parameter
// (postconf(5): "the default time unit is ..."): the unit letter of its
// built-in default, e.g. 's' for queue_run_delay (300s), 'd' for
// maximal_queue_lifetime (5d), 'h' for delay_warning_time (0h); 's' when
// the default has none.
func (c *Config) DefaultUnit(name string) byte {
	d, ok := c.DefaultValue(name)
	if !ok {
		return 's'
	}
	if v, err := c.Expand(d); err == nil {
		d = v
	}
	d = strings.TrimSpace(d)
	if d != "" && strings.IndexByte("smhdw", d[len(d)-1]) >= 0 {
		return d[len(d)-1]
	}
	return 's'
}

var timeUnits = map[byte]time.Duration{
	's': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour,
}

// ParseDuration reads a Postfix time value: a decimal number with an
// optional unit s, m, h, d or w (src: global/conv_time.c); defUnit applies
// to a bare number.
func ParseDuration(v string, defUnit byte) (time.Duration, error) {
	s := strings.TrimSpace(v)
	unit := defUnit
	if s != "" && strings.IndexByte("smhdwSMHDW", s[len(s)-1]) >= 0 {
		unit = strings.ToLower(s[len(s)-1 : len(s)])[0]
		s = s[:len(s)-1]
	}
	mult, ok := timeUnits[unit]
	if !ok || !allDigits(s) {
		return 0, fmt.Errorf("%w: %q is not a time value", ErrSyntax, v)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > int64(1<<62)/int64(mult) {
		return 0, fmt.Errorf("%w: time value %q out of range", ErrSyntax, v)
	}
	return time.Duration(n) * mult, nil
}

// Duration reads a time parameter, a bare number counting in the
// parameter's default unit (see DefaultUnit).
func (c *Config) Duration(name string) (time.Duration, error) {
	v, err := c.getForParse(name)
	if err != nil {
		return 0, err
	}
	d, err := ParseDuration(v, c.DefaultUnit(name))
	if err != nil {
		return 0, c.paramError(name, v, err)
	}
	return d, nil
}

// List returns the expanded value of a list parameter split into items
// (see SplitList).
func (c *Config) List(name string) []string {
	return SplitList(c.Get(name))
}

// SplitList splits a list value on commas and whitespace, as Postfix's
// mystrtokq does: text in { } is not split, and an item written as
// "{ ... }" is returned without the braces and the whitespace just inside
// them (postconf(5), since Postfix 3.0: "check_policy_service { inet:h:p,
// timeout=10s }").
func SplitList(s string) []string {
	const sep = ", \t\r\n"
	var items []string
	i := 0
	for {
		for i < len(s) && strings.IndexByte(sep, s[i]) >= 0 {
			i++
		}
		if i >= len(s) {
			return items
		}
		start, level := i, 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '{' {
				level++
			} else if c == '}' {
				if level > 0 {
					level--
				}
			} else if level == 0 && strings.IndexByte(sep, c) >= 0 {
				break
			}
		}
		items = append(items, stripBraces(s[start:i]))
	}
}

// stripBraces turns "{ text }" into "text".
func stripBraces(t string) string {
	if len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}' {
		return strings.Trim(t[1:len(t)-1], " \t\r\n")
	}
	return t
}
