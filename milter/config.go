package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// Default actions when a milter is unreachable, times out or breaks the
// protocol (milter_default_action).
const (
	ActionAccept     = "accept"     // go on as if the milter had accepted
	ActionReject     = "reject"     // reject the message (550 5.7.1)
	ActionTempfail   = "tempfail"   // defer the message (451 4.7.1); Postfix's default
	ActionQuarantine = "quarantine" // accept the message and put it on hold
)

// Postfix's defaults for the timeouts and the protocol version.
const (
	DefaultConnectTimeout = 30 * time.Second  // milter_connect_timeout
	DefaultCommandTimeout = 30 * time.Second  // milter_command_timeout
	DefaultContentTimeout = 300 * time.Second // milter_content_timeout
	DefaultProtocol       = 6                 // milter_protocol
)

// Spec is one milter of a milter list: where it listens and the settings
// that override the global ones for it (the "{ inet:host:port, name=value,
// ... }" form of smtpd_milters). Zero fields take Config's value.
type Spec struct {
	Name    string // as written: "inet:127.0.0.1:8891", "unix:/run/opendkim.sock"
	Network string // "tcp" or "unix"
	Address string // host:port or socket path

	ConnectTimeout time.Duration // connect_timeout
	CommandTimeout time.Duration // command_timeout
	ContentTimeout time.Duration // content_timeout
	DefaultAction  string        // default_action
	Protocol       int           // protocol
}

// Macros lists the macros sent at each stage (milter_*_macros) and the
// values used for macros the message has none for (milter_macro_defaults).
// A milter may ask for other lists when it negotiates; it then gets those.
type Macros struct {
	Connect, Helo, Mail, Rcpt, Data, EndOfHeaders, EndOfData []string
	Defaults                                                 map[string]string
}

// DefaultMacros returns Postfix 3.7's default macro lists.
func DefaultMacros() *Macros {
	return &Macros{
		Connect:      []string{"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
		Helo:         []string{"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
		Mail:         []string{"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
		Rcpt:         []string{"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
		Data:         []string{"i"},
		EndOfHeaders: []string{"i"},
		EndOfData:    []string{"i"},
	}
}

// Config is a list of milters and the settings they share. The zero value
// with Milters set works: zero fields mean Postfix's defaults.
type Config struct {
	Milters        []Spec
	DefaultAction  string        // milter_default_action; "" = tempfail
	ConnectTimeout time.Duration // milter_connect_timeout; 0 = 30s
	CommandTimeout time.Duration // milter_command_timeout; 0 = 30s
	ContentTimeout time.Duration // milter_content_timeout; 0 = 300s
	Protocol       int           // milter_protocol (2 to 6); 0 = 6
	Macros         *Macros       // nil = DefaultMacros()
	// ClientMaps is smtpd_milter_maps (Postfix 3.2): tables searched with
	// the client IP address; a value is a milter list that replaces
	// Milters for that client, or DISABLE for none. Nil: Milters for all.
	// Local submission (Envelope.Local) does not consult it.
	ClientMaps maps.List
	// Values are macro values that do not depend on the message: "j"
	// ($myhostname), "v" (milter_macro_v), "{daemon_name}"
	// (milter_macro_daemon_name). Envelope.Macros override them.
	Values map[string]string
	Logger *slog.Logger // nil = slog.Default()
}

// FromConfig builds the milter configuration for param ("smtpd_milters" or
// "non_smtpd_milters") from main.cf. It returns a Config with no Milters
// when param is empty.
func FromConfig(ctx context.Context, cfg *config.Config, param string) (*Config, error) {
	r := config.NewReader(cfg)
	c := &Config{
		DefaultAction:  strings.ToLower(r.Str("milter_default_action")),
		ConnectTimeout: r.Duration("milter_connect_timeout"),
		CommandTimeout: r.Duration("milter_command_timeout"),
		ContentTimeout: r.Duration("milter_content_timeout"),
		Macros: &Macros{
			Connect:      macroList(r.Str("milter_connect_macros")),
			Helo:         macroList(r.Str("milter_helo_macros")),
			Mail:         macroList(r.Str("milter_mail_macros")),
			Rcpt:         macroList(r.Str("milter_rcpt_macros")),
			Data:         macroList(r.Str("milter_data_macros")),
			EndOfHeaders: macroList(r.Str("milter_end_of_header_macros")),
			EndOfData:    macroList(r.Str("milter_end_of_data_macros")),
		},
		Values: map[string]string{
			"j":             r.Str("myhostname"),
			"v":             r.Str("milter_macro_v"),
			"{daemon_name}": r.Str("milter_macro_daemon_name"),
		},
	}
	proto := r.Str("milter_protocol")
	defaults := r.Str("milter_macro_defaults")
	list := r.Str(param)
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("milter: reading %s settings: %w", param, err)
	}
	var err error
	if c.Protocol, err = parseProtocol(proto); err != nil {
		return nil, fmt.Errorf("milter: milter_protocol: %w", err)
	}
	if err := checkAction(c.DefaultAction); err != nil {
		return nil, fmt.Errorf("milter: milter_default_action: %w", err)
	}
	if c.Macros.Defaults, err = parseMacroDefaults(defaults); err != nil {
		return nil, fmt.Errorf("milter: milter_macro_defaults: %w", err)
	}
	if c.Milters, err = ParseList(list); err != nil {
		return nil, fmt.Errorf("milter: %s: %w", param, err)
	}
	if param == "smtpd_milters" {
		for _, spec := range config.SplitList(cfg.Get("smtpd_milter_maps")) {
			m, err := maps.Open(ctx, spec)
			if err != nil {
				return nil, fmt.Errorf("milter: smtpd_milter_maps: %w", err)
			}
			c.ClientMaps = append(c.ClientMaps, m)
		}
	}
	return c, nil
}

// milters returns the milters for a message: smtpd_milter_maps' answer for
// the client when it has one, else Milters.
func (c *Config) milters(ctx context.Context, env *Envelope) ([]Spec, error) {
	if len(c.ClientMaps) == 0 || env.Local || env.ClientAddr == "" {
		return c.Milters, nil
	}
	res, ok, err := c.ClientMaps.Find(ctx, env.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("milter: smtpd_milter_maps lookup of %s: %w", env.ClientAddr, err)
	}
	if !ok {
		return c.Milters, nil
	}
	if strings.EqualFold(strings.TrimSpace(res.Value), "DISABLE") {
		return nil, nil
	}
	specs, err := ParseList(res.Value)
	if err != nil {
		return nil, fmt.Errorf("milter: smtpd_milter_maps result for %s: %w", env.ClientAddr, err)
	}
	return specs, nil
}

// ParseList parses a milter list as smtpd_milters takes it: entries
// separated by commas or white space, each "inet:host:port", "unix:/path"
// or "{ inet:host:port, name = value, ... }" with the per-milter settings
// connect_timeout, command_timeout, content_timeout, default_action and
// protocol (Postfix 3.0 and later).
func ParseList(s string) ([]Spec, error) {
	var specs []Spec
	for _, item := range config.SplitList(s) {
		spec, err := ParseSpec(item)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// ParseSpec parses one milter: "inet:host:port", "unix:/path", or the
// inside of a "{ ... }" entry (the address, then name=value settings). The
// braces themselves may be present.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		if !strings.HasSuffix(s, "}") {
			return Spec{}, fmt.Errorf("milter %q: missing '}'", s)
		}
		s = s[1 : len(s)-1]
	}
	fields := splitSettings(s)
	if len(fields) == 0 {
		return Spec{}, fmt.Errorf("milter %q: no address", s)
	}
	spec, err := parseAddress(fields[0])
	if err != nil {
		return Spec{}, err
	}
	for _, f := range fields[1:] {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return Spec{}, fmt.Errorf("milter %s: setting %q is not name=value", spec.Name, f)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		var err error
		switch name {
		case "connect_timeout":
			spec.ConnectTimeout, err = config.ParseDuration(value, 's')
		case "command_timeout":
			spec.CommandTimeout, err = config.ParseDuration(value, 's')
		case "content_timeout":
			spec.ContentTimeout, err = config.ParseDuration(value, 's')
		case "default_action":
			value = strings.ToLower(value)
			err = checkAction(value)
			spec.DefaultAction = value
		case "protocol":
			spec.Protocol, err = parseProtocol(value)
		default:
			err = fmt.Errorf("unknown setting")
		}
		if err != nil {
			return Spec{}, fmt.Errorf("milter %s: %s = %s: %w", spec.Name, name, value, err)
		}
	}
	return spec, nil
}

// splitSettings splits the inside of a braced entry on commas and white
// space, keeping "name = value" together.
func splitSettings(s string) []string {
	var out []string
	for _, f := range config.SplitList(s) {
		switch {
		case len(out) > 1 && (f == "=" || strings.HasPrefix(f, "=")):
			out[len(out)-1] += f
		case len(out) > 1 && strings.HasSuffix(out[len(out)-1], "="):
			out[len(out)-1] += f
		default:
			out = append(out, f)
		}
	}
	return out
}

// parseAddress turns "inet:host:port" or "unix:/path" into a Spec.
func parseAddress(a string) (Spec, error) {
	kind, rest, ok := strings.Cut(a, ":")
	if !ok || rest == "" {
		return Spec{}, fmt.Errorf("milter %q: want inet:host:port or unix:/path", a)
	}
	spec := Spec{Name: a}
	switch strings.ToLower(kind) {
	case "inet":
		// The host may be a bracketed IPv6 address; the port is after the
		// last colon. "inet:port" alone means localhost, as in Postfix.
		i := strings.LastIndexByte(rest, ':')
		host, port := "", rest
		if i >= 0 {
			host, port = rest[:i], rest[i+1:]
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			host = "localhost"
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
				return Spec{}, fmt.Errorf("milter %q: bad port %q", a, port)
			}
		}
		spec.Network, spec.Address = "tcp", net.JoinHostPort(host, port)
	case "unix", "local":
		spec.Network, spec.Address = "unix", rest
	default:
		return Spec{}, fmt.Errorf("milter %q: unknown transport %q (want inet or unix)", a, kind)
	}
	return spec, nil
}

func checkAction(a string) error {
	switch a {
	case "", ActionAccept, ActionReject, ActionTempfail, ActionQuarantine:
		return nil
	}
	return fmt.Errorf("%q is not accept, reject, tempfail or quarantine", a)
}

// parseProtocol reads milter_protocol: a version 2 to 6, optionally with
// Postfix's "no_header_reply" suffix, which only concerns milters that
// negotiate it and needs nothing from us.
func parseProtocol(v string) (int, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	v, _, _ = strings.Cut(v, "_")
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 || n > 6 || n == 5 {
		return 0, fmt.Errorf("%q is not a milter protocol version (2, 3, 4 or 6)", v)
	}
	return n, nil
}

// macroList splits a macro list: config's list splitting would take
// "{name}" for a braced group and drop the braces.
func macroList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' })
}

// parseMacroDefaults reads "name=value, name2=value2" (milter_macro_defaults).
func parseMacroDefaults(s string) (map[string]string, error) {
	items := config.SplitList(s)
	if len(items) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(items))
	for _, it := range items {
		name, value, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%q is not name=value", it)
		}
		m[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return m, nil
}

// settings are the effective settings of one milter.
type settings struct {
	spec                                           Spec
	connectTimeout, commandTimeout, contentTimeout time.Duration
	defaultAction                                  string
	protocol                                       int
}

func (c *Config) settingsFor(s Spec) settings {
	pick := func(a, b, def time.Duration) time.Duration {
		if a > 0 {
			return a
		}
		if b > 0 {
			return b
		}
		return def
	}
	st := settings{
		spec:           s,
		connectTimeout: pick(s.ConnectTimeout, c.ConnectTimeout, DefaultConnectTimeout),
		commandTimeout: pick(s.CommandTimeout, c.CommandTimeout, DefaultCommandTimeout),
		contentTimeout: pick(s.ContentTimeout, c.ContentTimeout, DefaultContentTimeout),
		defaultAction:  s.DefaultAction,
		protocol:       s.Protocol,
	}
	if st.defaultAction == "" {
		st.defaultAction = c.DefaultAction
	}
	if st.defaultAction == "" {
		st.defaultAction = ActionTempfail
	}
	if st.protocol == 0 {
		st.protocol = c.Protocol
	}
	if st.protocol == 0 {
		st.protocol = DefaultProtocol
	}
	return st
}
