package cleanup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/contentcheck"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/rewrite"
)

// FromConfig builds a Cleanup from main.cf parameters (see the package
// documentation for the list), queuing into store.
func FromConfig(ctx context.Context, cfg *config.Config, store Store) (*Cleanup, error) {
	c, err := ConfigFromMain(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return New(c, store)
}

// ConfigFromMain translates main.cf into a Config, for callers that want
// to adjust it before New.
func ConfigFromMain(ctx context.Context, cfg *config.Config) (Config, error) {
	r := config.NewReader(cfg)
	var c Config
	c.Hostname = r.Str("myhostname")
	c.HopcountLimit = r.Int("hopcount_limit")
	c.AlwaysAddMissingHeaders = r.Bool("always_add_missing_headers")
	c.DropHeaders = r.List("message_drop_headers")
	if c.DropHeaders == nil {
		c.DropHeaders = []string{}
	}
	c.UndisclosedRecipientsHeader = r.Str("undisclosed_recipients_header")
	c.HeaderFromFormat = r.Str("header_from_format")
	c.NoOriginalRecipient = !r.Bool("enable_original_recipient")
	c.LongQueueIDs = r.Bool("enable_long_queue_ids")
	c.AlwaysBCC = r.Str("always_bcc")
	c.ContentFilter = r.Str("content_filter")
	c.RemoteHeaderRewriteDomain = r.Str("remote_header_rewrite_domain")
	c.MessageSizeLimit = r.Size("message_size_limit")
	for _, o := range r.List("receive_override_options") {
		switch strings.ToLower(o) {
		case "no_address_mappings":
			c.NoAddressMappings = true
		case "no_header_body_checks":
			c.NoHeaderBodyChecks = true
		case "no_milters":
			c.NoMilters = true
		}
	}
	if err := r.Err(); err != nil {
		return c, fmt.Errorf("cleanup: %w", err)
	}
	var err error
	if c.SenderBCCMaps, err = openList(ctx, "sender_bcc_maps", r.List("sender_bcc_maps")); err != nil {
		return c, err
	}
	if c.RecipientBCCMaps, err = openList(ctx, "recipient_bcc_maps", r.List("recipient_bcc_maps")); err != nil {
		return c, err
	}
	if c.LocalHeaderRewriteClients, err = headerRewriteClientsFrom(ctx, r); err != nil {
		return c, err
	}
	if c.Rewriter, err = rewrite.FromConfig(ctx, cfg, "smtp"); err != nil {
		return c, fmt.Errorf("cleanup: %w", err)
	}
	if c.Checks, err = contentcheck.FromConfig(ctx, cfg); err != nil {
		return c, fmt.Errorf("cleanup: %w", err)
	}
	if err := milterFromMain(ctx, cfg, &c); err != nil {
		return c, err
	}
	return c, nil
}

func openList(ctx context.Context, param string, specs []string) (maps.List, error) {
	var l maps.List
	for _, s := range specs {
		m, err := maps.Open(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("cleanup: %s: %w", param, err)
		}
		l = append(l, m)
	}
	return l, nil
}

// headerRewriteClientsFrom parses local_header_rewrite_clients.
func headerRewriteClientsFrom(ctx context.Context, r *config.Reader) (*HeaderRewriteClients, error) {
	return parseClientList(ctx, r, "local_header_rewrite_clients", r.List("local_header_rewrite_clients"))
}

// parseClientList parses a local_header_rewrite_clients-style list for
// the parameter param.
func parseClientList(ctx context.Context, r *config.Reader, param string, items []string) (*HeaderRewriteClients, error) {
	if len(items) == 0 {
		return nil, nil
	}
	h := &HeaderRewriteClients{}
	for i := 0; i < len(items); i++ {
		switch it := strings.ToLower(items[i]); it {
		case "permit_inet_interfaces":
			h.PermitInetInterfaces = true
			h.OwnAddrs = ownAddrs(r.Str("inet_interfaces"))
		case "permit_mynetworks":
			l, err := maps.NewMatchList(ctx, maps.MatchListConfig{Name: "mynetworks", Kind: maps.HostMatch,
				ParentStyle: r.ParentStyle("mynetworks")}, r.List("mynetworks"))
			if err != nil {
				return nil, fmt.Errorf("cleanup: %s: %w", param, err)
			}
			h.MyNetworks = l
		case "permit_sasl_authenticated":
			h.PermitSASLAuthenticated = true
		case "check_address_map":
			if i+1 >= len(items) {
				return nil, fmt.Errorf("cleanup: %s: check_address_map needs a table", param)
			}
			i++
			m, err := maps.Open(ctx, items[i])
			if err != nil {
				return nil, fmt.Errorf("cleanup: %s: %w", param, err)
			}
			h.AddressMaps = append(h.AddressMaps, m)
		case "permit_tls_clientcerts", "permit_tls_all_clientcerts":
			// Not supported: the client certificate does not reach
			// cleanup. Such clients get the remote context.
		default:
			return nil, fmt.Errorf("cleanup: %s: unknown item %q", param, items[i])
		}
	}
	return h, nil
}

// ownAddrs resolves inet_interfaces to the addresses the server listens
// on: "all" is every interface address, "loopback-only" the loopback
// addresses.
func ownAddrs(v string) []netip.Addr {
	var out []netip.Addr
	for _, it := range config.SplitList(v) {
		switch strings.ToLower(it) {
		case "all":
			ifs, _ := net.InterfaceAddrs()
			for _, a := range ifs {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					out = append(out, p.Addr().Unmap())
				}
			}
		case "loopback-only":
			out = append(out, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback())
		default:
			it = strings.Trim(it, "[]")
			if a, err := netip.ParseAddr(it); err == nil {
				out = append(out, a.Unmap())
				continue
			}
			if ips, err := net.LookupIP(it); err == nil {
				for _, ip := range ips {
					if a, ok := netip.AddrFromSlice(ip); ok {
						out = append(out, a.Unmap())
					}
				}
			}
		}
	}
	return out
}
