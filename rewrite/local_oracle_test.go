package rewrite

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
)

// The user-only keys ("joe", "joe+ext") of canonical_maps and
// virtual_alias_maps are tried only when the domain is local: $myorigin,
// or resolve_local(3), which matches $mydestination as a string list
// (exact names and table keys, no subdomains, whatever
// parent_domain_matches_subdomains says) and the [literal] of an
// inet_interfaces or proxy_interfaces address. TestOracleLocalDomains
// compares cleanup's answers for subdomains of mydestination entries, a
// ".domain" entry and a table with a ".domain" key. (virtual_alias_domains,
// the other string list FromConfig builds, is not used by cleanup's
// rewriting; TestFromConfigLocalDomains checks its kind.)

var localDomainsFiles = []oracle.File{
	{Name: "canonical", Postmap: "hash", Data: "joe canon-joe@c.test\n"},
	{Name: "virtual", Postmap: "hash", Data: "alice v-alice@c.test\nbob+x v-bobx@c.test\n"},
	{Name: "mydest", Postmap: "hash", Data: ".tbl.example x\ntbl.example x\n"},
}

// localDomainsRcpts are local parts with table entries at domains that
// are, or are not, local.
var localDomainsRcpts = func() []string {
	var out []string
	for _, d := range []string{"example.com", "a.example.com", "sub.example.com", "x.sub.example.com",
		"tbl.example", "a.tbl.example", "origin.example", "a.origin.example", "[127.0.0.1]", "[127.0.0.2]"} {
		for _, u := range []string{"joe", "alice", "bob+x"} {
			out = append(out, u+"@"+d)
		}
	}
	return out
}()

func TestOracleLocalDomains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Postfix")
	}
	const main = `
mydestination = $myorigin, example.com, .sub.example.com, hash:$config_directory/mydest
recipient_delimiter = +
canonical_maps = hash:$config_directory/canonical
virtual_alias_maps = hash:$config_directory/virtual
`
	for _, tc := range []struct{ name, parent string }{
		{"default", ""},
		{"parent-style", "parent_domain_matches_subdomains = mydestination\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := []oracleMsg{{sender: "s@x.test", rcpts: localDomainsRcpts, headers: []string{"From: s@x.test", "To: joe@a.example.com, alice@x.sub.example.com"}}}
			n := compareOracle(t, oracleCase{name: "localdomains", main: main + tc.parent, files: localDomainsFiles, msgs: msgs})
			t.Logf("%d addresses and headers compared with Postfix", n)
		})
	}
}

// TestFromConfigLocalDomains: FromConfig's local-domain test is
// resolve_local's, without Postfix (the oracle test above shows these are
// Postfix's answers).
func TestFromConfigLocalDomains(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Set("myorigin", "origin.example")
	cfg.Set("mydestination", "$myorigin, example.com, .sub.example.com, inline:{.tbl.example=x, tbl.example=x}")
	cfg.Set("parent_domain_matches_subdomains", "mydestination, virtual_alias_domains")
	cfg.Set("inet_interfaces", "127.0.0.1")
	cfg.Set("virtual_alias_domains", "valias.example")
	r, err := FromConfig(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain string
		local  bool
	}{
		{"example.com", true}, {"EXAMPLE.COM", true}, {"example.com.", true},
		{"a.example.com", false}, {"sub.example.com", false}, {"x.sub.example.com", false}, {".sub.example.com", true},
		{"tbl.example", true}, {"a.tbl.example", false}, {"origin.example", true}, {"a.origin.example", false},
		{"[127.0.0.1]", true}, {"[127.0.0.2]", false},
	} {
		got, err := r.isLocal(ctx, tc.domain)
		if err != nil || got != tc.local {
			t.Errorf("isLocal(%q) = %v, %v; want %v", tc.domain, got, err, tc.local)
		}
	}
	for _, tc := range []struct {
		domain string
		want   bool
	}{{"valias.example", true}, {"VAlias.Example", true}, {"a.valias.example", false}} {
		if got, err := r.cfg.VirtualAliasDomains.Match(ctx, tc.domain); err != nil || got != tc.want {
			t.Errorf("virtual_alias_domains %q: %v, %v; want %v", tc.domain, got, err, tc.want)
		}
	}
}
