package route

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/queue"
)

var _ queue.Router = (*Resolver)(nil)

func domains(t *testing.T, kind maps.MatchKind, items ...string) *maps.MatchList {
	t.Helper()
	l, err := maps.NewMatchList(context.Background(), maps.MatchListConfig{Name: "test", Kind: kind, ParentStyle: kind == maps.DomainMatch}, items)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testConfig(t *testing.T) Config {
	c := Defaults("mx.example.com", "example.com")
	c.MyDestination = domains(t, maps.StringMatch, "example.com", "mx.example.com", "localhost")
	c.VirtualAliasDomains = domains(t, maps.StringMatch, "alias.example")
	c.VirtualMailboxDomains = domains(t, maps.StringMatch, "mbox.example")
	c.RelayDomains = domains(t, maps.DomainMatch, "relay.example")
	c.RecipientDelimiter = "+"
	c.Logger = discardLogger()
	return c
}

func newResolver(t *testing.T, c Config) *Resolver {
	t.Helper()
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRouteAnswers(t *testing.T) {
	c := testConfig(t)
	c.SenderDependentRelayhostMaps = maps.List{maps.StaticMap{"@corp.example": "[corp-relay.example]:2525"}}
	r := newResolver(t, c)
	ctx := context.Background()
	for _, tc := range []struct {
		sender, rcpt string
		want         queue.Route
		err          *queue.RouteError
	}{
		{"", "joe@example.com", queue.Route{Transport: "local", Nexthop: "mx.example.com"}, nil},
		{"", "joe+box@mx.example.com", queue.Route{Transport: "local", Nexthop: "mx.example.com"}, nil},
		{"", "joe@mbox.example", queue.Route{Transport: "virtual", Nexthop: "mbox.example"}, nil},
		{"", "joe@a.relay.example", queue.Route{Transport: "relay", Nexthop: "a.relay.example"}, nil},
		{"", "joe@remote.example", queue.Route{Transport: "smtp", Nexthop: "remote.example"}, nil},
		{"a@corp.example", "joe@remote.example", queue.Route{Transport: "smtp", Nexthop: "[corp-relay.example]:2525"}, nil},
		{"", "joe@alias.example", queue.Route{}, &queue.RouteError{Permanent: true, DSN: "5.1.1", Reason: "User unknown in virtual alias table"}},
		{"", "joe@a..b", queue.Route{}, &queue.RouteError{Permanent: true, DSN: "5.1.3", Reason: "bad address syntax"}},
	} {
		env := &cleanup.Envelope{Sender: tc.sender}
		got, err := r.Route(ctx, env, tc.rcpt)
		if tc.err != nil {
			var re *queue.RouteError
			if !errors.As(err, &re) || *re != *tc.err {
				t.Errorf("Route(%q, %q) error = %#v, want %#v", tc.sender, tc.rcpt, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Route(%q, %q) = %+v, %v; want %+v", tc.sender, tc.rcpt, got, err, tc.want)
		}
	}
}

// A table that cannot be searched defers the recipient (4.3.0), as
// Postfix's queue manager does on RESOLVE_FLAG_FAIL.
func TestTableFailureDefers(t *testing.T) {
	down := maps.FuncMap(func(ctx context.Context, key string) (string, bool, error) {
		return "", false, &maps.Error{Map: "pgsql:transport", Key: key, Temporary: true, Err: errors.New("connection refused")}
	})
	ctx := context.Background()
	for name, set := range map[string]func(*Config){
		"transport_maps":                          func(c *Config) { c.TransportMaps = maps.List{down} },
		"sender_dependent_relayhost_maps":         func(c *Config) { c.SenderDependentRelayhostMaps = maps.List{down} },
		"sender_dependent_default_transport_maps": func(c *Config) { c.SenderDependentDefaultTransportMaps = maps.List{down} },
		"relocated_maps":                          func(c *Config) { c.RelocatedMaps = maps.List{down} },
		"relay_domains":                           nil, // below
	} {
		t.Run(name, func(t *testing.T) {
			c := testConfig(t)
			if set != nil {
				set(&c)
			}
			if name == "relay_domains" {
				reg := maps.NewRegistry()
				reg.Register("pgsql", func(context.Context, string, maps.Options) (maps.Map, error) { return down, nil })
				l, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: name, Kind: maps.DomainMatch, Registry: reg}, []string{"relay.example", "pgsql:/down.cf"})
				if err != nil {
					t.Fatal(err)
				}
				c.RelayDomains = l
			}
			var logs bytes.Buffer
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			r := newResolver(t, c)
			_, err := r.Resolve(ctx, "a@sender.example", "joe@remote.example")
			if !IsLookupFailure(err) || !maps.IsTemporary(err) {
				t.Fatalf("Resolve error = %v, want a temporary lookup failure", err)
			}
			_, err = r.Route(ctx, &cleanup.Envelope{Sender: "a@sender.example"}, "joe@remote.example")
			var re *queue.RouteError
			if !errors.As(err, &re) || re.Permanent || re.DSN != "4.3.0" || re.Reason != "address resolver failure" {
				t.Fatalf("Route error = %#v, want a 4.3.0 deferral", err)
			}
			if !strings.Contains(logs.String(), name+" lookup failure") {
				t.Errorf("log %q does not name %s", logs.String(), name)
			}
		})
	}
}

func TestCanceledContext(t *testing.T) {
	r := newResolver(t, testConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Route(ctx, nil, "joe@remote.example"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Route with a canceled context: %v", err)
	}
}

// A domain in two class lists gets Postfix's warning; the first class in
// Postfix's order wins.
func TestDomainInTwoClasses(t *testing.T) {
	c := testConfig(t)
	c.VirtualMailboxDomains = domains(t, maps.StringMatch, "mbox.example", "example.com")
	c.RelayDomains = domains(t, maps.DomainMatch, "mbox.example")
	var logs bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r := newResolver(t, c)
	res, err := r.Resolve(context.Background(), "", "joe@mbox.example")
	if err != nil || res.Class != VirtualMailbox {
		t.Fatalf("Resolve = %+v, %v; want virtual mailbox", res, err)
	}
	res, err = r.Resolve(context.Background(), "", "joe@example.com")
	if err != nil || res.Class != Local {
		t.Fatalf("Resolve = %+v, %v; want local", res, err)
	}
	for _, w := range []string{
		"do not list domain mbox.example in BOTH virtual_mailbox_domains and relay_domains",
		"do not list domain example.com in BOTH mydestination and virtual_mailbox_domains",
	} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
}

func TestNewRejects(t *testing.T) {
	c := testConfig(t)
	c.DefaultTransport = "smtp out:[x]"
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "default_transport") {
		t.Errorf("New with a space in default_transport: %v", err)
	}
	c = testConfig(t)
	c.MyHostname = ""
	if _, err := New(c); err == nil {
		t.Error("New without MyHostname succeeded")
	}
}

func TestFromConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ main, want string }{
		{"transport_maps = nosuchtype:/x", "transport_maps"},
		{"relay_domains = nosuchtype:/x", "relay_domains"},
		{"local_transport = lo cal", "local_transport"},
	} {
		cfg, err := config.Parse("main.cf", strings.NewReader("myhostname = mx.example.com\n"+tc.main+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := FromConfig(ctx, cfg, Options{Logger: discardLogger()}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.main, err, tc.want)
		}
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[Class]string{Local: "local", VirtualAlias: "virtual alias", VirtualMailbox: "virtual mailbox", Relay: "relay", Default: "default", 0: "Class(0)"} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(c), got, want)
		}
	}
}
