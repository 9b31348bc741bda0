package rewrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/maps"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTest(t *testing.T, edit func(c *Config)) *Rewriter {
	t.Helper()
	c := Defaults("origin.test", "example.test")
	c.Logger = quiet()
	if edit != nil {
		edit(&c)
	}
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// errMap fails every lookup, as a database that is down does.
var errMap = maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
	return "", false, &maps.Error{Map: "pgsql:down", Key: key, Temporary: true, Err: errors.New("connection refused")}
})

func TestTableErrorsAreReturned(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		edit func(c *Config)
		run  func(r *Rewriter) error
	}{
		{"canonical_maps/sender", func(c *Config) { c.CanonicalMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, err := r.Sender(ctx, "joe", false); return err }},
		{"sender_canonical_maps", func(c *Config) { c.SenderCanonicalMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, err := r.Sender(ctx, "joe", false); return err }},
		{"recipient_canonical_maps", func(c *Config) { c.RecipientCanonicalMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, err := r.Recipient(ctx, "joe", false); return err }},
		{"virtual_alias_maps", func(c *Config) { c.VirtualAliasMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, err := r.VirtualAlias(ctx, "joe@x.test"); return err }},
		{"generic", func(c *Config) { c.GenericMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, err := r.Generic(ctx, "joe@x.test"); return err }},
		{"header", func(c *Config) { c.CanonicalMaps = maps.List{errMap} },
			func(r *Rewriter) error { _, _, err := r.HeaderLine(ctx, "To", " a@b.test", "", false); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(newTest(t, tc.edit))
			if err == nil || !maps.IsTemporary(err) {
				t.Fatalf("got %v, want a temporary table error", err)
			}
			var ee *ExpansionError
			if errors.As(err, &ee) {
				t.Fatalf("a table error is not an expansion error: %v", err)
			}
		})
	}
}

func TestNoMappingsSkipsTables(t *testing.T) {
	ctx := context.Background()
	r := newTest(t, func(c *Config) {
		c.CanonicalMaps = maps.List{errMap} // would fail if asked
		c.MasqueradeDomains = []string{"example.test"}
	})
	if got, err := r.Sender(ctx, "joe@host.example.test", true); err != nil || got != "joe@host.example.test" {
		t.Errorf("Sender = %q, %v", got, err)
	}
	if got, err := r.Recipient(ctx, "", true); err != nil || got != "MAILER-DAEMON@origin.test" {
		t.Errorf("Recipient(\"\") = %q, %v", got, err)
	}
	got, changed, err := r.HeaderLine(ctx, "From", " joe\r\n", "", true)
	if err != nil || !changed || got != " joe@origin.test\r\n" {
		t.Errorf("HeaderLine = %q, %v, %v", got, changed, err)
	}
}

func TestGenericIsOneLookup(t *testing.T) {
	ctx := context.Background()
	generic := maps.StaticMap{
		"joe@local.test":         "joe.public@example.com",
		"joe.public@example.com": "never@example.com",
		"@local.test":            "@example.com",
		"multi@local.test":       "first@example.com, second@example.com",
	}
	cases := []struct {
		prop     Extensions
		in, want string
	}{
		{0, "joe@local.test", "joe.public@example.com"},
		{0, "ann@local.test", "ann@example.com"},
		// user@domain is a key whether or not extensions propagate.
		{0, "joe+x@local.test", "joe.public@example.com"},
		{0, "multi@local.test", "first@example.com"},
		{0, "nobody@else.test", "nobody@else.test"},
		{0, "", ""},
	}
	for _, tc := range cases {
		r := newTest(t, func(c *Config) {
			c.GenericMaps = maps.List{generic}
			c.PropagateUnmatchedExtensions = tc.prop
			c.RecipientDelimiter = "+"
		})
		if got, err := r.Generic(ctx, tc.in); err != nil || got != tc.want {
			t.Errorf("Generic(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// With generic in propagate_unmatched_extensions, user+ext@domain
	// finds user@domain and keeps the extension.
	r := newTest(t, func(c *Config) {
		c.GenericMaps = maps.List{maps.StaticMap{"joe@local.test": "jp@example.com"}}
		c.PropagateUnmatchedExtensions = PropagateGeneric
		c.RecipientDelimiter = "+"
	})
	if got, _ := r.Generic(ctx, "joe+x@local.test"); got != "jp+x@example.com" {
		t.Errorf("Generic with propagation = %q", got)
	}
}

func TestHeaderUnchangedKeepsBytes(t *testing.T) {
	ctx := context.Background()
	r := newTest(t, nil)
	for _, v := range []string{
		" a@b.test\r\n",
		" \"Joe\" <joe@x.test>,\r\n\t(comment) ann@y.test\r\n",
		"",
		" ",
	} {
		got, changed, err := r.HeaderLine(ctx, "To", v, "", false)
		if err != nil || changed || got != v {
			t.Errorf("HeaderLine(%q) = %q, %v, %v; want it unchanged", v, got, changed, err)
		}
	}
	// A header that is not an address header is never touched.
	if got, changed, _ := r.HeaderLine(ctx, "Subject", " joe", "", false); changed || got != " joe" {
		t.Errorf("Subject rewritten: %q", got)
	}
}

func TestHeaderCRLF(t *testing.T) {
	ctx := context.Background()
	r := newTest(t, nil)
	// The line ends of the input are kept: CRLF in, CRLF out; the fold
	// itself is compared with Postfix in oracle_test.go.
	got, changed, err := r.Header(ctx, HeaderRecipient, " aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbbbbb,\r\n ccccccccccccccccccc, d\r\n", "")
	want := " aaaaaaaaaaaaaaaaaaaa@origin.test,\r\n\tbbbbbbbbbbbbbbbbbbbbbbb@origin.test, ccccccccccccccccccc@origin.test,\r\n\td@origin.test\r\n"
	if err != nil || !changed || got != want {
		t.Errorf("Header = %q, %v, %v\nwant %q", got, changed, err, want)
	}
	got, _, _ = r.Header(ctx, HeaderSender, " x", "remote.test")
	if got != " x@remote.test" {
		t.Errorf("remote context: %q", got)
	}
}

func TestHeaderClass(t *testing.T) {
	for name, want := range map[string]Class{
		"From": HeaderSender, "SENDER": HeaderSender, "reply-to": HeaderSender, "Resent-From": HeaderSender,
		"Errors-To": HeaderSender, "Return-Path": HeaderSender, "Disposition-Notification-To": HeaderSender,
		"To": HeaderRecipient, "cc": HeaderRecipient, "Bcc": HeaderRecipient, "Resent-Reply-To": HeaderRecipient,
		"Apparently-To": HeaderRecipient,
	} {
		if got, ok := HeaderClass(name); !ok || got != want {
			t.Errorf("HeaderClass(%q) = %v, %v; want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"Subject", "Received", "Delivered-To", "X-From", ""} {
		if _, ok := HeaderClass(name); ok {
			t.Errorf("HeaderClass(%q) is an address header", name)
		}
	}
}

func TestExpansionErrorText(t *testing.T) {
	r := newTest(t, func(c *Config) {
		c.VirtualAliasMaps = maps.List{maps.StaticMap{"a@x.test": "a@x.test, b@x.test", "b@x.test": "c@x.test, d@x.test"}}
		c.VirtualAliasExpansionLimit = 2
	})
	_, err := r.VirtualAlias(context.Background(), "a@x.test")
	var ee *ExpansionError
	if !errors.As(err, &ee) || ee.Addr != "a@x.test" || !strings.Contains(err.Error(), "expansion size") {
		t.Fatalf("got %v", err)
	}
}

func TestNewRejectsNegativeLimits(t *testing.T) {
	c := Defaults("a.test", "a.test")
	c.VirtualAliasRecursionLimit = -1
	if _, err := New(c); err == nil {
		t.Fatal("negative limit accepted")
	}
}

func TestHeaderAddresses(t *testing.T) {
	r := newTest(t, nil)
	cases := []struct {
		value string
		want  string
	}{
		{` "Joe Q. Public" <joe@x.test>, ann@y.test (Ann)`, "[joe@x.test ann@y.test]"},
		{` team: a@x.test, "b c"@x.test;, d@y.test`, "[a@x.test b c@x.test d@y.test]"},
		{` Name a@b.test`, "[Name a@b.test]"}, // tok822: two words, two addresses
		{` <>, undisclosed:;`, "[]"},
		{" a@x.test,\r\n\tb@y.test", "[a@x.test b@y.test]"},
	}
	for _, tc := range cases {
		if got := fmt.Sprint(r.HeaderAddresses(tc.value)); got != tc.want {
			t.Errorf("HeaderAddresses(%q) = %s, want %s", tc.value, got, tc.want)
		}
	}
}

// TestConcurrentUse: one Rewriter serves many messages at once.
func TestConcurrentUse(t *testing.T) {
	r := newTest(t, func(c *Config) {
		c.RecipientDelimiter = "+"
		c.CanonicalMaps = maps.List{maps.StaticMap{"joe@origin.test": "jp@example.test"}}
		c.VirtualAliasMaps = maps.List{maps.StaticMap{"all@example.test": "a@x.test, b@x.test, all@example.test"}}
		c.MasqueradeDomains = []string{"example.test"}
	})
	ctx := context.Background()
	done := make(chan string, 8)
	for i := 0; i < 8; i++ {
		go func() {
			var got string
			for j := 0; j < 200; j++ {
				s, _ := r.Sender(ctx, "joe", false)
				l, _ := r.VirtualAlias(ctx, "all+x@example.test")
				h, _, _ := r.HeaderLine(ctx, "Cc", " joe, u@h.example.test", "", false)
				got = s + " " + fmt.Sprint(l) + h
			}
			done <- got
		}()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; got != "jp@example.test [a+x@x.test b+x@x.test all+x@example.test] jp@example.test, u@example.test" {
			t.Fatalf("got %q", got)
		}
	}
}
