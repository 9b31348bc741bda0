package resolver

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestCanonicalName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Example.COM", "example.com", true},
		{"example.com.", "example.com", true},
		{"_dmarc.example.com", "_dmarc.example.com", true},
		{"sel._domainkey.example.com", "sel._domainkey.example.com", true},
		{"4.3.2.1.zen.example", "4.3.2.1.zen.example", true},
		{"a-b.example", "a-b.example", true},
		{"localhost", "localhost", true},
		{"", "", false},
		{".", "", false},
		{"example.com..", "", false},
		{".example.com", "", false},
		{"a..b", "", false},
		{"-a.example", "", false},
		{"a-.example", "", false},
		{"1.2.3.4", "", false},
		{"123", "", false},
		{"a b", "", false},
		{"a\\046b.example", "", false},
		{"ex\xc3\xa4mple.com", "", false},
		{strings.Repeat("a", 63) + ".example", strings.Repeat("a", 63) + ".example", true},
		{strings.Repeat("a", 64) + ".example", "", false},
		{strings.Repeat("a.", 126) + "b", strings.Repeat("a.", 126) + "b", true}, // 253 characters
		{strings.Repeat("a.", 126) + "bc", "", false},
	}
	for _, tt := range tests {
		got, ok := canonicalName(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("canonicalName(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// Every name canonicalName accepts must be one miekg/dns can send as it
// is, with the same labels.
func FuzzCanonicalName(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "a..b", "4.3.2.1.zen.example", "-a", "_x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, ok := canonicalName(s)
		if !ok {
			return
		}
		if name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
			t.Fatalf("canonicalName(%q) = %q: not lower case without a trailing dot", s, name)
		}
		if _, ok := dns.IsDomainName(name + "."); !ok {
			t.Fatalf("canonicalName(%q) = %q, which miekg/dns rejects", s, name)
		}
		buf := make([]byte, 256)
		if _, err := dns.PackDomainName(name+".", buf, 0, nil, false); err != nil {
			t.Fatalf("canonicalName(%q) = %q, which does not pack: %v", s, name, err)
		}
		if got := dns.SplitDomainName(name); strings.Join(got, ".") != name {
			t.Fatalf("labels of %q: %q", name, got)
		}
	})
}

func TestUnescapeTXT(t *testing.T) {
	tests := map[string]string{
		`plain`:          "plain",
		`say \"hi\"`:     `say "hi"`,
		`back\\slash`:    `back\slash`,
		`caf\195\169`:    "café",
		`tab\009x`:       "tab\tx",
		`\256`:           "256", // not a byte: the backslash quotes '2'
		`end\`:           `end\`,
		`\12`:            "12",
		`\000\255`:       "\x00\xff",
		`mixed \" \065B`: `mixed " AB`,
	}
	for in, want := range tests {
		if got := unescapeTXT(in); got != want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", in, got, want)
		}
	}
}

// What miekg/dns escapes when it unpacks a TXT record, unescapeTXT must turn
// back into the bytes that were on the wire.
func FuzzUnescapeTXT(f *testing.F) {
	f.Add([]byte("v=spf1 -all"))
	f.Add([]byte("say \"hi\" \\ back\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 255 {
			b = b[:255]
		}
		wire := append([]byte{byte(len(b))}, b...)
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}}
		msg := new(dns.Msg)
		msg.SetQuestion("x.", dns.TypeTXT)
		msg.Answer = []dns.RR{rr}
		packed, err := msg.Pack()
		if err != nil {
			t.Fatal(err)
		}
		// Splice the raw character string in as the record's data.
		packed = append(packed[:len(packed)-2], byte(len(wire)>>8), byte(len(wire)))
		packed = append(packed, wire...)
		var got dns.Msg
		if err := got.Unpack(packed); err != nil {
			t.Fatalf("unpacking: %v", err)
		}
		txt := got.Answer[0].(*dns.TXT).Txt
		if len(txt) != 1 || unescapeTXT(txt[0]) != string(b) {
			t.Fatalf("unescapeTXT(%q) = %q, want %q", txt, unescapeTXT(txt[0]), b)
		}
	})
}

func TestLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newLRU(3)
	k := func(i int) key { return key{fmt.Sprint(i), dns.TypeA} }
	ans := func(i int) answer { return answer{strs: []string{fmt.Sprint(i)}} }
	for i := range 3 {
		c.put(k(i), ans(i), now.Add(time.Minute))
	}
	c.get(k(0), now) // 1 is now the least recently used
	c.put(k(3), ans(3), now.Add(time.Minute))
	if _, ok := c.get(k(1), now); ok {
		t.Error("the least recently used entry survived")
	}
	for _, i := range []int{0, 2, 3} {
		if a, ok := c.get(k(i), now); !ok || a.strs[0] != fmt.Sprint(i) {
			t.Errorf("entry %d: %v, %v", i, a, ok)
		}
	}
	if c.len() != 3 {
		t.Errorf("len = %d", c.len())
	}
	// Expiry: an entry is gone at its expiry time.
	c.put(k(4), ans(4), now.Add(time.Second))
	if _, ok := c.get(k(4), now.Add(time.Second-1)); !ok {
		t.Error("entry gone before it expired")
	}
	if _, ok := c.get(k(4), now.Add(time.Second)); ok {
		t.Error("entry alive at its expiry")
	}
	if c.len() != 2 {
		t.Errorf("len after expiry = %d, want 2", c.len())
	}
	// Replacing an entry keeps one copy.
	c.put(k(2), ans(9), now.Add(time.Minute))
	if a, _ := c.get(k(2), now); c.len() != 2 || a.strs[0] != "9" {
		t.Errorf("after replacing: len %d, %v", c.len(), a)
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Config
	}{
		{"empty", "", Config{Servers: []string{"127.0.0.1:53", "[::1]:53"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"typical", "# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2 timeout:3 attempts:4\n",
			Config{Servers: []string{"192.0.2.53:53", "[2001:db8::53]:53"}, Timeout: 3 * time.Second, Attempts: 4}},
		{"three at most", "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
			Config{Servers: []string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"names and junk skipped", "nameserver dns.example.com\nnameserver\nnameserver 192.0.2.300\nnameserver 192.0.2.9 # trailing\n",
			Config{Servers: []string{"192.0.2.9:53"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"comments", "#nameserver 192.0.2.1\n;nameserver 192.0.2.2\n nameserver 192.0.2.3\n",
			Config{Servers: []string{"192.0.2.3:53"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"clamped", "nameserver 192.0.2.1\noptions timeout:0 attempts:99\noptions rotate use-vc\n",
			Config{Servers: []string{"192.0.2.1:53"}, Timeout: time.Second, Attempts: 5, Rotate: true, TCP: true}},
		{"huge and bad numbers", "nameserver 192.0.2.1\noptions timeout:99999999999999 attempts:x attempts:-1\n",
			Config{Servers: []string{"192.0.2.1:53"}, Timeout: 30 * time.Second, Attempts: 2}},
		{"zone and CRLF", "nameserver fe80::1%eth0\r\noptions timeout:1\r\n",
			Config{Servers: []string{"[fe80::1%eth0]:53"}, Timeout: time.Second, Attempts: 2}},
	}
	for _, tt := range tests {
		got := parseResolvConf([]byte(tt.text))
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// The parser reads a file any local user may have written; whatever it
// holds, it must not panic and must give a Config that New accepts.
func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 192.0.2.1\noptions timeout:2 attempts:3 rotate\n"))
	f.Add([]byte("nameserver fe80::1%eth0\nsearch a b\n#x\n;y\noptions ndots:15 use-vc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := parseResolvConf(data)
		if len(cfg.Servers) == 0 || len(cfg.Servers) > maxNameservers {
			t.Fatalf("%d servers", len(cfg.Servers))
		}
		if cfg.Timeout < time.Second || cfg.Timeout > maxTimeoutSecs*time.Second || cfg.Attempts < 1 || cfg.Attempts > maxAttempts {
			t.Fatalf("out of range: %+v", cfg)
		}
		if _, err := New(cfg); err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
	})
}

// interpret reads replies from the network: whatever a server sends, it
// must not panic, and what it returns must be one of the forms the Lookup
// methods expect.
func FuzzInterpret(f *testing.F) {
	seed := func(qtype uint16, rcode int, rrs ...string) {
		m := new(dns.Msg)
		m.SetQuestion("example.com.", qtype)
		m.Response = true
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			if rr.Header().Rrtype == dns.TypeSOA {
				m.Ns = append(m.Ns, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(dns.TypeMX, dns.RcodeSuccess, "example.com. 60 IN MX 10 mx.example.com.", "example.com. 60 IN MX 0 .")
	seed(dns.TypeA, dns.RcodeSuccess, "example.com. 60 IN CNAME a.example.com.", "a.example.com. 60 IN A 192.0.2.1")
	seed(dns.TypeTXT, dns.RcodeSuccess, `example.com. 60 IN TXT "a\"b" "c\255"`)
	seed(dns.TypeAAAA, dns.RcodeNameError, "example.com. 60 IN SOA ns. h. 1 2 3 4 5")
	seed(dns.TypePTR, dns.RcodeSuccess, "example.com. 60 IN PTR host.example.")
	seed(dns.TypeNS, dns.RcodeServerFailure)
	c, err := New(Config{Servers: []string{"192.0.2.1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil || len(r.Question) == 0 {
			return
		}
		q := r.Question[0]
		name, ok := canonicalName(q.Name)
		if !ok {
			return
		}
		ans, _ := c.interpret(key{name, q.Qtype}, r, "192.0.2.1:53")
		if ans.fail != nil {
			if ans.mx != nil || ans.addrs != nil || ans.strs != nil {
				t.Fatalf("failure with data: %+v", ans)
			}
			if err := ans.err(name); err == nil || IsNotFound(err) == IsTemporary(err) {
				t.Fatalf("error %v is neither or both not found and temporary", err)
			}
			return
		}
		if n := len(ans.mx) + len(ans.addrs) + len(ans.strs); n == 0 {
			t.Fatalf("success without data: %+v", ans)
		}
		for _, a := range ans.addrs {
			if q.Qtype == dns.TypeA && !a.Is4() || q.Qtype == dns.TypeAAAA && !a.Is6() {
				t.Fatalf("address %v for %s", a, dns.TypeToString[q.Qtype])
			}
		}
		if ans.ttl < 0 || ans.ttl > DefaultMaxTTL {
			t.Fatalf("ttl %v", ans.ttl)
		}
	})
}

func TestPTRName(t *testing.T) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "::", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s)
		want, err := dns.ReverseAddr(a.WithZone("").String())
		if err != nil {
			t.Fatal(err)
		}
		if got := ptrName(a) + "."; got != want {
			t.Errorf("ptrName(%s) = %q, miekg/dns says %q", s, got, want)
		}
	}
	if ptrName(netip.Addr{}) != "" {
		t.Error("ptrName of the zero Addr is not empty")
	}
}
