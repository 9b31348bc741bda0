package contentcheck

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/config"
)

func TestFromConfig(t *testing.T) {
	h, _ := filepath.Abs("testdata/header.regexp")
	b, _ := filepath.Abs("testdata/body.pcre")
	first := filepath.Join(t.TempDir(), "first")
	if err := writeFile(first, "/^zz$/ WARN first\n"); err != nil {
		t.Fatal(err)
	}
	main := "header_checks = regexp:" + h + "\nbody_checks = regexp:" + first + ", pcre:" + b + "\n" +
		"body_checks_size_limit = 0\nheader_size_limit = 4096\nstrict_8bitmime = yes\nmime_nesting_limit = 7\n"
	cfg, err := config.Parse("main.cf", strings.NewReader(main))
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.HeaderChecks == nil || c.MIMEHeaderChecks != c.HeaderChecks || c.NestedHeaderChecks != c.HeaderChecks {
		t.Errorf("mime_header_checks and nested_header_checks should share $header_checks: %v %v %v", c.HeaderChecks, c.MIMEHeaderChecks, c.NestedHeaderChecks)
	}
	if _, ok := c.BodyChecks.(listMap); !ok {
		t.Errorf("two body_checks tables: %T", c.BodyChecks)
	}
	if c.BodyChecksSizeLimit != -1 || c.HeaderSizeLimit != 4096 || !c.Strict8bitMIME || c.MIMENestingLimit != 7 || c.LineLengthLimit != 2048 {
		t.Errorf("limits %+v", c)
	}
	// The second body table answers what the first does not.
	for key, want := range map[string]string{"zz": "WARN first", "Subject: free": "DUNNO"} {
		v, ok, err := c.BodyChecks.Lookup(context.Background(), key)
		if err != nil || !ok || v != want {
			t.Errorf("lookup %q = %q %v %v, want %q", key, v, ok, err, want)
		}
	}
	// Defaults: no tables.
	c, err = FromConfig(context.Background(), config.Default())
	if err != nil || c.HeaderChecks != nil || c.BodyChecks != nil || c.BodyChecksSizeLimit != 51200 {
		t.Errorf("defaults: %+v %v", c, err)
	}
	// A table that cannot be opened is an error naming the parameter.
	cfg, _ = config.Parse("main.cf", strings.NewReader("body_checks = regexp:/nonexistent/x\n"))
	if _, err := FromConfig(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "body_checks") {
		t.Errorf("bad table: %v", err)
	}
}
