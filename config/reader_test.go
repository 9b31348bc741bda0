package config

import (
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	c, err := Parse("main.cf", strings.NewReader("smtpd_timeout = 30s\nsmtpd_delay_reject = maybe\nsmtpd_recipient_limit = many\nparent_domain_matches_subdomains = relay_domains\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(c)
	if d := r.Duration("smtpd_timeout"); d != 30*time.Second {
		t.Errorf("smtpd_timeout = %v", d)
	}
	if r.Err() != nil {
		t.Fatalf("error before any bad value: %v", r.Err())
	}
	r.Bool("smtpd_delay_reject")
	r.Int("smtpd_recipient_limit")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "smtpd_delay_reject") {
		t.Errorf("first error kept: %v", err)
	}
	if !r.ParentStyle("relay_domains") || r.ParentStyle("smtpd_access_maps") {
		t.Errorf("ParentStyle does not follow parent_domain_matches_subdomains")
	}
}
