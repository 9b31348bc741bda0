package route

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTransport(t *testing.T) {
	for _, tc := range []struct{ in, transport, nexthop string }{
		{"smtp:[mail.example.com]:2525", "smtp", "[mail.example.com]:2525"},
		{"lmtp:unix:/run/dovecot/lmtp", "lmtp", "unix:/run/dovecot/lmtp"},
		{"lmtp:inet:lmtp.example.com:24", "lmtp", "inet:lmtp.example.com:24"},
		{"error:5.1.1 no such user: joe", "error", "5.1.1 no such user: joe"},
		{"discard:", "discard", ""},
		{"local:", "local", ""},
		{"relay:", "relay", ""},
		{":[nexthop.example]", "", "[nexthop.example]"},
		{":", "", ""},
		{"smtp", "smtp", ""},
		{"smtp::", "smtp", ":"},
	} {
		tr, nh, err := ParseTransport(tc.in)
		if err != nil || tr != tc.transport || nh != tc.nexthop {
			t.Errorf("ParseTransport(%q) = %q, %q, %v; want %q, %q", tc.in, tr, nh, err, tc.transport, tc.nexthop)
		}
	}
	for _, bad := range []string{"smtp out:", "smtp\t:x", "smtp:a\nb", "sm\x00tp:"} {
		if _, _, err := ParseTransport(bad); err == nil {
			t.Errorf("ParseTransport(%q) succeeded", bad)
		}
	}
}

func TestParseNexthop(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Nexthop
	}{
		{"example.com", Nexthop{Network: "inet", Host: "example.com"}},
		{"example.com:2525", Nexthop{Network: "inet", Host: "example.com", Port: "2525"}},
		{"[mx.example.com]", Nexthop{Network: "inet", Host: "mx.example.com", NoMX: true}},
		{"[192.0.2.1]:submission", Nexthop{Network: "inet", Host: "192.0.2.1", Port: "submission", NoMX: true}},
		{"[ipv6:2001:db8::1]:25", Nexthop{Network: "inet", Host: "2001:db8::1", Port: "25", NoMX: true}},
		{"[IPv6:2001:db8::1]", Nexthop{Network: "inet", Host: "2001:db8::1", NoMX: true}},
		{"inet:lmtp.example.com:24", Nexthop{Network: "inet", Host: "lmtp.example.com", Port: "24"}},
		{"inet:[192.0.2.7]:24", Nexthop{Network: "inet", Host: "192.0.2.7", Port: "24", NoMX: true}},
		{"unix:/run/dovecot/lmtp", Nexthop{Network: "unix", Path: "/run/dovecot/lmtp"}},
		{"unix:private/dovecot-lmtp", Nexthop{Network: "unix", Path: "private/dovecot-lmtp"}},
	} {
		got, err := ParseNexthop(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseNexthop(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "[mx.example.com", "[mx]x", "[]", ":25", "mx:", "mx:2 5", "unix:", "a[b]", "[a]:x/y", "a,b", "[[a]]"} {
		if n, err := ParseNexthop(bad); err == nil {
			t.Errorf("ParseNexthop(%q) = %+v, want an error", bad, n)
		} else if !strings.HasPrefix(err.Error(), "route: ") {
			t.Errorf("ParseNexthop(%q) error %q lacks the package prefix", bad, err)
		}
	}
}

func TestParseNexthops(t *testing.T) {
	got, err := ParseNexthops("[mx1.example.com], [mx2.example.com]:2525 backup.example")
	want := []Nexthop{
		{Network: "inet", Host: "mx1.example.com", NoMX: true},
		{Network: "inet", Host: "mx2.example.com", Port: "2525", NoMX: true},
		{Network: "inet", Host: "backup.example"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseNexthops = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseNexthops(" , "); err == nil {
		t.Error("ParseNexthops of separators only succeeded")
	}
}
