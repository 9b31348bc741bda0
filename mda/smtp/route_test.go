package smtp

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestParseDest(t *testing.T) {
	tests := []struct {
		in   string
		lmtp bool
		want dest
		err  bool
	}{
		{"example.com", false, dest{raw: "example.com", host: "example.com", port: 25, mx: true}, false},
		{"Example.COM.", false, dest{raw: "Example.COM.", host: "example.com", port: 25, mx: true}, false},
		{"example.com:587", false, dest{raw: "example.com:587", host: "example.com", port: 587, mx: true}, false},
		{"[mail.example.com]", false, dest{raw: "[mail.example.com]", host: "mail.example.com", port: 25}, false},
		{"[mail.example.com]:submission", false, dest{raw: "[mail.example.com]:submission", host: "mail.example.com", port: 587}, false},
		{"[192.0.2.1]:2525", false, dest{raw: "[192.0.2.1]:2525", host: "192.0.2.1", port: 2525}, false},
		{"[ipv6:2001:db8::1]", false, dest{raw: "[ipv6:2001:db8::1]", host: "2001:db8::1", port: 25}, false},
		{"192.0.2.1", false, dest{raw: "192.0.2.1", host: "192.0.2.1", port: 25}, false},
		{"unix:/run/lmtp", true, dest{raw: "unix:/run/lmtp", unix: "/run/lmtp", port: 25}, false},
		{"inet:lmtp.example.com:24", true, dest{raw: "inet:lmtp.example.com:24", host: "lmtp.example.com", port: 24}, false},
		{"inet:[10.0.0.1]", true, dest{raw: "inet:[10.0.0.1]", host: "10.0.0.1", port: 25}, false},
		{"[unclosed", false, dest{}, true},
		{"[]", false, dest{}, true},
		{"host:99999", false, dest{}, true},
		{"[x]y", false, dest{}, true},
		{"unix:", true, dest{}, true},
	}
	for _, tt := range tests {
		got, err := parseDest(tt.in, tt.lmtp, 25)
		if (err != nil) != tt.err || err == nil && got != tt.want {
			t.Errorf("%q: got %+v %v, want %+v", tt.in, got, err, tt.want)
		}
	}
	ds, err := parseDests("a.example, [b.example]:26 c.example", false, 25)
	if err != nil || len(ds) != 3 || ds[1].port != 26 || !ds[2].mx {
		t.Errorf("list: %+v %v", ds, err)
	}
}

// FuzzParseDest: any nexthop parses or fails with an error, never a panic,
// and a parsed one has a host or a socket path and a valid port.
func FuzzParseDest(f *testing.F) {
	for _, s := range []string{"example.com", "[a]:25", "inet:[::1]:24", "unix:/x", "[ipv6:::1]", "a:b:c"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, lmtp bool) {
		ds, err := parseDests(s, lmtp, 25)
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.unix == "" && (d.host == "" || d.port <= 0 || d.port > 65535 || strings.ContainsAny(d.host, "[] ,")) {
				t.Fatalf("%q: bad dest %+v", s, d)
			}
		}
	})
}

func TestTLSMinVersion(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		err  bool
	}{
		{"", tls.VersionTLS10, false},
		{">=TLSv1", tls.VersionTLS10, false},
		{">=TLSv1.2", tls.VersionTLS12, false},
		{"!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", tls.VersionTLS12, false},
		{"!SSLv2:!SSLv3", tls.VersionTLS10, false},
		{"!TLSv1.2", 0, true},
		{">=TLSv9", 0, true},
		{"TLSv1.2", 0, true},
	}
	for _, tt := range tests {
		got, err := tlsMinVersion(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%q: %x %v", tt.in, got, err)
		}
	}
}
