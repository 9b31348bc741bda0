package config

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
)

// configBenchData is a realistic main.cf of about 100 lines.
func configBenchData(b *testing.B) []byte {
	b.Helper()
	data, err := os.ReadFile("testdata/bench/main.cf")
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func configBenchConfig(b *testing.B) *Config {
	b.Helper()
	c, err := Parse("main.cf", bytes.NewReader(configBenchData(b)))
	if err != nil {
		b.Fatal(err)
	}
	c.SetHost(Host{Hostname: "mail", Interfaces: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")}})
	return c
}

// BenchmarkConfigLoad parses a ~100-line main.cf.
func BenchmarkConfigLoad(b *testing.B) {
	data := configBenchData(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("main.cf", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConfigGet reads parameters whose values refer to others a few
// levels deep (proxy_read_maps refers to a dozen lists, mydestination to
// myhostname and mydomain, smtp_tls_mandatory_protocols to
// smtpd_tls_protocols), as a server does for every message.
func BenchmarkConfigGet(b *testing.B) {
	c := configBenchConfig(b)
	names := []string{"proxy_read_maps", "mydestination", "smtp_tls_mandatory_protocols", "smtpd_banner", "local_recipient_maps"}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			if c.Get(n) == "" {
				b.Fatalf("%s is empty", n)
			}
		}
	}
}

// BenchmarkConfigList splits an expanded list parameter.
func BenchmarkConfigList(b *testing.B) {
	c := configBenchConfig(b)
	b.ReportAllocs()
	for b.Loop() {
		if len(c.List("smtpd_recipient_restrictions")) != 9 {
			b.Fatal(c.List("smtpd_recipient_restrictions"))
		}
	}
}
