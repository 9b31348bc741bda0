package resolver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultResolvConf is where NewFromResolvConf reads its servers.
const DefaultResolvConf = "/etc/resolv.conf"

// Limits of glibc's resolver (resolv.h): at most three name servers, a
// timeout of at most 30 seconds and at most 5 attempts.
const (
	maxNameservers = 3
	maxTimeoutSecs = 30
	maxAttempts    = 5
)

// ConfigFromResolvConf reads the servers and options of a resolv.conf(5)
// file: the first three "nameserver" lines that hold an IP address (an
// IPv6 address may carry a zone, fe80::1%eth0), and the "options"
// timeout:N (1 to 30 seconds), attempts:N (1 to 5), rotate and use-vc (TCP).
// Other lines and options ("search", "domain", "ndots:", "edns0", ...) are
// ignored: mail lookups use fully qualified names, so there is no search
// list, and EDNS0 is always on. A line is a comment when it starts with '#'
// or ';'. Without a usable nameserver line the servers are 127.0.0.1 and
// ::1, as for glibc. It fails only when the file cannot be read; the
// RES_OPTIONS environment variable is not consulted.
func ConfigFromResolvConf(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("resolver: reading %w", err)
	}
	return parseResolvConf(data), nil
}

// NewFromResolvConf returns a Client configured from /etc/resolv.conf, or
// for 127.0.0.1 and ::1 when that file does not exist (as glibc does).
func NewFromResolvConf() (*Client, error) {
	cfg, err := ConfigFromResolvConf(DefaultResolvConf)
	if errors.Is(err, fs.ErrNotExist) {
		cfg, err = parseResolvConf(nil), nil
	}
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// parseResolvConf reads resolv.conf text; it never fails, as the C library
// reading the same file does not.
func parseResolvConf(data []byte) Config {
	cfg := Config{Timeout: DefaultTimeout, Attempts: DefaultAttempts}
	for line := range bytes.Lines(data) {
		if len(line) > 0 && (line[0] == '#' || line[0] == ';') {
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(cfg.Servers) >= maxNameservers {
				continue
			}
			a, err := netip.ParseAddr(f[1])
			if err != nil {
				continue
			}
			cfg.Servers = append(cfg.Servers, netip.AddrPortFrom(a, 53).String())
		case "options":
			for _, opt := range f[1:] {
				name, arg, _ := strings.Cut(opt, ":")
				switch name {
				case "timeout":
					if n, ok := optionNumber(arg, 1, maxTimeoutSecs); ok {
						cfg.Timeout = time.Duration(n) * time.Second
					}
				case "attempts":
					if n, ok := optionNumber(arg, 1, maxAttempts); ok {
						cfg.Attempts = n
					}
				case "rotate":
					cfg.Rotate = true
				case "use-vc", "usevc":
					cfg.TCP = true
				}
			}
		}
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []string{"127.0.0.1:53", "[::1]:53"}
	}
	return cfg
}

// optionNumber parses the decimal argument of a resolv.conf option and
// clamps it to [lo, hi]; ok is false when it is not a number.
func optionNumber(s string, lo, hi int) (int, bool) {
	if s == "" || len(s) > 9 {
		if s != "" && strings.Trim(s, "0123456789") == "" {
			return hi, true // a huge number: clamp it
		}
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return min(max(n, lo), hi), true
}
