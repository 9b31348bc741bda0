package maps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mlRegistry gives tests "static"-like tables without the real openers:
// "set:a,b" is a fixed table holding keys a and b; "pat:a,b" is the same
// posing as a pattern table; "down:x" fails every lookup.
func mlRegistry(asked *[]string) *Registry {
	r := &Registry{}
	mk := func(kind Kind) Opener {
		return func(_ context.Context, name string, _ Options) (Map, error) {
			m := StaticMap{}
			for _, k := range strings.Split(name, ",") {
				m[FoldKey(k)] = "x"
			}
			return keyTable{name: name, kind: kind, data: m, asked: asked}, nil
		}
	}
	r.Register("set", mk(Fixed))
	r.Register("pat", mk(Pattern))
	r.Register("down", func(_ context.Context, name string, _ Options) (Map, error) {
		return keyTable{name: "down:" + name, err: &Error{Map: "down:" + name, Temporary: true, Err: errors.New("unavailable")}, asked: asked}, nil
	})
	return r
}

func TestMLMatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f1 := filepath.Join(dir, "domains")
	f2 := filepath.Join(dir, "nested")
	os.WriteFile(f1, []byte("# comment line\nfile.example, other.example\n"+f2+"\n"), 0o644)
	os.WriteFile(f2, []byte("deep.example\n"), 0o644)
	nets := filepath.Join(dir, "nets")
	os.WriteFile(nets, []byte("10.0.0.0/8\n"), 0o644)

	type probe struct {
		name, addr string
		want       bool
	}
	tests := []struct {
		desc   string
		kind   MatchKind
		parent bool
		items  []string
		probes []probe
	}{
		{"dot style literal", DomainMatch, false, []string{"example.com", ".example.org"}, []probe{
			{"example.com", "", true}, {"EXAMPLE.Com", "", true}, {"sub.example.com", "", false},
			{"example.org", "", false}, {"sub.example.org", "", true}, {"a.b.example.org", "", true}, {"xexample.org", "", false},
		}},
		{"parent style literal", DomainMatch, true, []string{"example.com"}, []probe{
			{"example.com", "", true}, {"sub.example.com", "", true}, {"a.b.Example.COM", "", true},
			{"xexample.com", "", false}, {"com", "", false},
		}},
		{"first match wins, negation", DomainMatch, true, []string{"!bad.example.com", "example.com"}, []probe{
			{"bad.example.com", "", false}, {"x.bad.example.com", "", false}, {"good.example.com", "", true},
		}},
		{"negation after match is never reached", DomainMatch, true, []string{"example.com", "!bad.example.com"}, []probe{
			{"bad.example.com", "", true},
		}},
		{"double negation", DomainMatch, false, []string{"!!example.com"}, []probe{{"example.com", "", true}}},
		{"items split again", DomainMatch, false, []string{"a.example, b.example c.example"}, []probe{
			{"b.example", "", true}, {"c.example", "", true},
		}},
		{"file", DomainMatch, false, []string{f1}, []probe{
			{"file.example", "", true}, {"other.example", "", true}, {"deep.example", "", true}, {"# comment", "", false}, {"comment", "", false},
		}},
		{"negated file", DomainMatch, false, []string{"!" + f1, "other.example", "x.example"}, []probe{
			{"other.example", "", false}, {"deep.example", "", false}, {"x.example", "", true},
		}},
		{"table dot style", DomainMatch, false, []string{"set:example.com,.example.net"}, []probe{
			{"example.com", "", true}, {"sub.example.com", "", false}, {"sub.example.net", "", true}, {"example.net", "", false},
		}},
		{"table parent style", DomainMatch, true, []string{"set:example.com"}, []probe{
			{"example.com", "", true}, {"a.b.example.com", "", true}, {"example.net", "", false},
		}},
		{"pattern table sees only the whole name", DomainMatch, true, []string{"pat:example.com"}, []probe{
			{"example.com", "", true}, {"sub.example.com", "", false},
		}},
		{"negated table", DomainMatch, true, []string{"!set:no.example", "example"}, []probe{
			{"no.example", "", false}, {"yes.example", "", true},
		}},
		{"networks", HostMatch, true, []string{"127.0.0.0/8", "[::1]/128", "[2001:db8::]/32", "192.0.2.7", "[192.0.2.9]", "[2001:db9::1]", "trusted.example"}, []probe{
			{"unknown", "127.0.0.1", true}, {"unknown", "128.0.0.1", false}, {"unknown", "::1", true},
			{"unknown", "2001:DB8:ffff::5", true}, {"unknown", "2001:db9::2", false},
			{"unknown", "192.0.2.7", true}, {"unknown", "192.0.2.9", true}, {"unknown", "192.0.2.8", false},
			{"unknown", "2001:db9:0::1", true}, {"unknown", "::ffff:127.0.0.2", true},
			{"mx.trusted.example", "203.0.113.1", true}, {"trusted.example.org", "203.0.113.1", false},
		}},
		{"host list with table", HostMatch, false, []string{"set:192.0.2.1,host.example"}, []probe{
			{"unknown", "192.0.2.1", true}, {"host.example", "203.0.113.1", true}, {"other", "192.0.2.2", false},
		}},
		{"host list network file", HostMatch, false, []string{"!10.1.0.0/16", nets}, []probe{
			{"unknown", "10.1.2.3", false}, {"unknown", "10.2.2.3", true},
		}},
		{"addr list ignores names", AddrMatch, false, []string{"example.com", "192.0.2.0/24"}, []probe{
			{"", "192.0.2.200", true}, {"example.com", "example.com", false},
		}},
		{"string list", StringMatch, false, []string{"root", "Joe@Example.com", "set:mailer-daemon"}, []probe{
			{"ROOT", "", true}, {"joe@example.com", "", true}, {"Mailer-Daemon", "", true}, {"rooted", "", false},
			{"sub.root", "", false},
		}},
	}
	for _, tt := range tests {
		var asked []string
		l, err := NewMatchList(ctx, MatchListConfig{Name: "test_list", Kind: tt.kind, ParentStyle: tt.parent, Registry: mlRegistry(&asked)}, tt.items)
		if err != nil {
			t.Errorf("%s: NewMatchList: %v", tt.desc, err)
			continue
		}
		for _, p := range tt.probes {
			var got bool
			if tt.kind == HostMatch || tt.kind == AddrMatch {
				got, err = l.MatchHost(ctx, p.name, p.addr)
			} else {
				got, err = l.Match(ctx, p.name)
			}
			if err != nil || got != p.want {
				t.Errorf("%s: match(%q, %q) = %v, %v; want %v", tt.desc, p.name, p.addr, got, err, p.want)
			}
		}
	}
}

func TestMLTableKeys(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		parent bool
		spec   string
		want   string
	}{
		{false, "set:none", "none:a.b.example none:.b.example none:.example"},
		{true, "set:none", "none:a.b.example none:b.example none:example"},
		{true, "pat:none", "none:a.b.example"},
	} {
		var asked []string
		l, err := NewMatchList(ctx, MatchListConfig{Name: "relay_domains", ParentStyle: tt.parent, Registry: mlRegistry(&asked)}, []string{tt.spec})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Match(ctx, "A.B.Example"); ok || err != nil {
			t.Fatalf("Match = %v %v", ok, err)
		}
		if got := strings.Join(asked, " "); got != tt.want {
			t.Errorf("%s parent=%v asked %q, want %q", tt.spec, tt.parent, got, tt.want)
		}
	}
}

func TestMLErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop")
	os.WriteFile(loop, []byte(loop+"\n"), 0o644)
	tests := []struct {
		kind  MatchKind
		items []string
		want  string
	}{
		{HostMatch, []string{"10.0.0.0/33"}, `maps: mynetworks: bad net/mask pattern "10.0.0.0/33"`},
		{HostMatch, []string{"10.0.0.1/8"}, `maps: mynetworks: non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead`},
		{HostMatch, []string{"[2001:db8::1]/32"}, `perhaps you should use "[2001:db8::]/32" instead`},
		{HostMatch, []string{"2001:db8::/32"}, "unsupported dictionary type: 2001"},
		{HostMatch, []string{"[2001:db8::/32"}, `bad net/mask pattern "[2001:db8::/32"`},
		{HostMatch, []string{"a/b"}, `bad net/mask pattern "a/b"`},
		{DomainMatch, []string{"!"}, `maps: mynetworks: empty pattern after '!' in "!"`},
		{DomainMatch, []string{filepath.Join(dir, "missing")}, "open file " + filepath.Join(dir, "missing")},
		{DomainMatch, []string{loop}, "nested more than 10 deep"},
		{DomainMatch, []string{"nosuch:table"}, "mynetworks: table nosuch:table: maps: nosuch:table: unsupported dictionary type: nosuch"},
	}
	for _, tt := range tests {
		_, err := NewMatchList(ctx, MatchListConfig{Name: "mynetworks", Kind: tt.kind, Registry: mlRegistry(new([]string))}, tt.items)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewMatchList(%q) = %v, want error containing %q", tt.items, err, tt.want)
		}
	}
	// A lookup failure is returned (temporary), naming the list and table.
	l, err := NewMatchList(ctx, MatchListConfig{Name: "relay_domains", Registry: mlRegistry(new([]string))}, []string{"down:x"})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := l.Match(ctx, "example.com")
	if ok || err == nil || !IsTemporary(err) || !strings.Contains(err.Error(), "relay_domains: down:x") {
		t.Errorf("Match with failing table = %v, %v", ok, err)
	}
}

func FuzzMLNewMatchList(f *testing.F) {
	for _, s := range []string{"example.com, !bad.example.com", "10.0.0.0/8 [::1]/128", "!!x", "set:a,b", "[2001:db8::]/32", "a/b", "!"} {
		f.Add(s, "host.example.com", "10.1.2.3")
	}
	reg := mlRegistry(new([]string))
	f.Fuzz(func(t *testing.T, items, name, addr string) {
		if strings.Contains(items, "/") && strings.HasPrefix(strings.TrimLeft(items, "! ,\t"), "/") {
			return // do not read arbitrary files
		}
		for _, kind := range []MatchKind{DomainMatch, HostMatch, AddrMatch, StringMatch} {
			l, err := NewMatchList(context.Background(), MatchListConfig{Name: "fuzz", Kind: kind, Registry: reg,
				ReadFile: func(string) ([]byte, error) { return nil, errors.New("no files") }}, []string{items})
			if err != nil {
				if !strings.HasPrefix(err.Error(), "maps: fuzz: ") {
					t.Fatalf("error does not name the list: %v", err)
				}
				continue
			}
			if _, err := l.MatchHost(context.Background(), name, addr); err != nil {
				t.Fatalf("MatchHost: %v", err)
			}
		}
	})
}

// An inline table with spaces inside its braces is one pattern: this is
// the default of smtpd_forbidden_commands.
func TestMatchListInlineTableWithSpaces(t *testing.T) {
	l, err := NewMatchList(context.Background(), MatchListConfig{Name: "smtpd_forbidden_commands", Kind: StringMatch},
		[]string{"CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}"})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"GET": true, "post": true, "1abc": true, ".": true, "NOOP": false, "noop": false} {
		got, err := l.Match(context.Background(), s)
		if err != nil || got != want {
			t.Errorf("Match(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}
