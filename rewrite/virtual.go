package rewrite

import (
	"context"
	"fmt"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/maps"
)

// VirtualAlias expands one recipient (already rewritten by Recipient)
// through virtual_alias_maps, as cleanup_map1n.c does (spec §6.3,
// virtual(5)):
//
//   - the first address of a result takes the place of the address that
//     was looked up and is expanded again at once; the other addresses are
//     appended to the list and expanded when their turn comes;
//   - an address whose result contains the address itself (ignoring case)
//     is kept and never expanded again ("a@x  a@x, b@y" delivers to both);
//   - an address without a match is final;
//   - the unmatched extension is propagated when virtual is in
//     propagate_unmatched_extensions.
//
// A list longer than virtual_alias_expansion_limit, more than
// virtual_alias_recursion_limit expansions of one position, or a result
// longer than virtual_alias_address_length_limit gives an *ExpansionError;
// a table error gives a wrapped maps error. Either way Postfix defers the
// whole message with "4.6.0 Alias expansion error", and so should the
// caller. Without virtual_alias_maps the result is the address itself.
func (r *Rewriter) VirtualAlias(ctx context.Context, addr string) ([]string, error) {
	if len(r.cfg.VirtualAliasMaps) == 0 || addr == "" {
		return []string{addr}, nil
	}
	prop := r.cfg.PropagateUnmatchedExtensions&PropagateVirtual != 0
	list := []string{addr}
	var selfMapped map[string]bool // addresses that expanded to themselves
	for arg := 0; arg < len(list); arg++ {
		if len(list) > r.cfg.VirtualAliasExpansionLimit {
			return nil, &ExpansionError{Addr: addr, Reason: "unreasonable virtual_alias_maps map expansion size"}
		}
		for count := 0; ; count++ {
			if selfMapped[maps.FoldKey(list[arg])] {
				break
			}
			if count >= r.cfg.VirtualAliasRecursionLimit {
				return nil, &ExpansionError{Addr: addr, Reason: "unreasonable virtual_alias_maps map nesting"}
			}
			res, ok, err := r.mapOnce(ctx, r.cfg.VirtualAliasMaps, address.Quote(list[arg]), maps.ExternalFirst, prop)
			if err != nil {
				return nil, fmt.Errorf("rewrite: virtual_alias_maps lookup for %s: %w", list[arg], err)
			}
			if !ok {
				break
			}
			lhs := list[arg]
			for i, ext := range res {
				in := address.Unquote(ext)
				if len(in) > r.cfg.VirtualAliasAddressLengthLimit {
					return nil, &ExpansionError{Addr: addr, Reason: "unreasonable virtual_alias_maps result " + truncate(in, 300) + "..."}
				}
				if i == 0 {
					list[arg] = in
				} else {
					list = append(list, in)
				}
				if maps.FoldKey(lhs) == maps.FoldKey(in) {
					if selfMapped == nil {
						selfMapped = map[string]bool{}
					}
					selfMapped[maps.FoldKey(lhs)] = true
				}
			}
		}
	}
	return list, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
