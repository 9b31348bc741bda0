package maps

import (
	"context"
	"fmt"
)

// NewRegistry returns a registry with every table type postkit implements.
func NewRegistry() *Registry {
	r := &Registry{}
	for typ, open := range map[string]Opener{
		// Postfix's indexed types; postkit reads the source text next to the
		// index (see text.go).
		"hash":  openHash,
		"btree": openBtree,
		"lmdb":  openLMDB,
		"dbm":   openDBM,
		"sdbm":  openDBM,

		"texthash": openTexthash,
		"inline":   openInline,
		"static":   openStatic,
		"fail":     openFail,
		"unionmap": openUnion,
		"pipemap":  openPipe,
		"unix":     openUnix,
		"proxy":    openProxy,

		"cdb":    openCDB,
		"cidr":   openCIDR,
		"regexp": openRegexp,
		"pcre":   openPCRE,

		"pgsql":  openPgSQL,
		"mysql":  openMySQL,
		"sqlite": openSQLite,
	} {
		r.Register(typ, open)
	}
	return r
}

// openProxy opens "proxy:type:name" as the inner table. Postfix routes such
// lookups through proxymap(8) to share connections and reach files outside
// a chroot; a postkit process opens the table itself.
func openProxy(ctx context.Context, name string, opts Options) (Map, error) {
	if opts.Registry == nil {
		return nil, fmt.Errorf("maps: proxy:%s: no registry", name)
	}
	return opts.Registry.Open(ctx, name, opts)
}
