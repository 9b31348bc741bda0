// Package route decides where each recipient goes: Postfix's
// trivial-rewrite "resolve" service with transport_maps, the question
// Postfix's queue manager asks for every recipient before delivery
// (trivial-rewrite(8), transport(5), ADDRESS_CLASS_README; spec §6.5).
// The queue's scheduler calls it through queue.Router.
//
// For each recipient it answers with an address class (local, virtual
// alias, virtual mailbox, relay or default), a transport (a master.cf
// service name: local, virtual, smtp, lmtp, relay, error, discard, ...), a
// next hop for that transport and the final recipient address:
//
//	r, err := route.FromConfig(ctx, cfg, route.Options{})   // main.cf
//	res, err := r.Resolve(ctx, "alice@example.com", "bob@example.net")
//	// res.Class == route.Default, res.Transport == "smtp", res.Nexthop == "example.net"
//
// Every answer was compared with Postfix 3.7: the differential test asks
// a private Postfix's own trivial-rewrite daemon (over its private/rewrite
// socket, the request qmgr sends) to resolve the same addresses under the
// same main.cf and tables: the case files in testdata/oracle and thousands
// of generated addresses. The recorded answers (*.golden) are checked on
// machines without Postfix.
//
// # What resolve does
//
// The recipient is expected in canonical form already (package rewrite,
// run by cleanup). Resolve then removes a trailing dot, and while the
// domain is local it removes the domain and follows any routing left in
// the local part: user%remote@local is user@remote (allow_percent_hack),
// remote!user@local is user@remote (swap_bangpath), "user@remote"@local
// too (resolve_dequoted_address). A recipient with no domain gets the last
// local domain back, or @$myhostname. The domain must then be a valid host
// name or address literal; an invalid one (user@a..b, user@[1.2.3]) is
// Result.Invalid, which Route reports as "5.1.3 bad address syntax".
// Routing operators still in the local part set Result.Routed.
//
// Classes are tested in this order, the first match wins:
//
//	local            $mydestination, or [ip] of $inet_interfaces/$proxy_interfaces   $local_transport (local:$myhostname)
//	virtual alias    $virtual_alias_domains          error:5.1.1 User unknown in virtual alias table
//	virtual mailbox  $virtual_mailbox_domains        $virtual_transport (virtual), next hop the domain
//	relay            $relay_domains                  $relay_transport (relay)
//	default          anything else                   $sender_dependent_default_transport_maps, else $default_transport (smtp)
//
// For relay and default the next hop is the sender's
// sender_dependent_relayhost_maps entry, else $relayhost, else the
// recipient domain. A "transport:nexthop" parameter value overrides the
// next hop. transport_maps then applies to every class but virtual alias,
// with the keys user+ext@domain, user@domain, domain, .parent domains (or
// parent domains when transport_maps is in
// parent_domain_matches_subdomains) and "*":
//
//	smtp:[mx.example.com]:2525   transport smtp, next hop [mx.example.com]:2525 (no MX lookup)
//	lmtp:unix:/run/lmtp          transport lmtp, next hop unix:/run/lmtp
//	lmtp:inet:host:24            transport lmtp, next hop inet:host:24
//	error:5.7.1 text             bounce with that text (retry: defers)
//	error:  retry:               "Address is undeliverable"
//	discard:  local:  relay:     that transport, next hop the recipient domain
//	:[gw.example]                the class's transport, this next hop
//	:                            no change
//
// A relocated_maps match finally routes the recipient to
// error:5.1.6 User has moved to NEW. ParseTransport splits a transport
// value, ParseNexthop and ParseNexthops parse an SMTP/LMTP next hop for a
// delivery agent.
//
// # Errors
//
// Route, the queue.Router method, turns the answer into what the queue
// needs: a table or domain list that cannot be searched is a temporary
// *queue.RouteError with 4.3.0 "address resolver failure" (Postfix's
// queue manager defers the recipient); an invalid address a permanent one
// with 5.1.3; a recipient of a virtual alias domain (one that virtual alias
// expansion did not map away) a permanent 5.1.1 "User unknown in virtual
// alias table", the bounce Postfix's error transport would give. Other
// error: transports from transport_maps are returned as routes, for the
// error delivery agent.
//
// # The SMTP server
//
// Postfix's smtpd asks trivial-rewrite the same questions for its
// restrictions (reject_unauth_destination, reject_unlisted_recipient).
// Resolver.SMTPD adapts a Resolver to restrictions.AddressResolver, so that
// an SMTP server rejects at RCPT time what transport_maps sends to error:
// or retry: and what relocated_maps lists, with Postfix's replies (compared
// with Postfix's smtpd in smtpd_test.go).
//
// # Parameters
//
// FromConfig reads these main.cf parameters (postconf(5)); Config holds
// the same as Go values:
//
//	myhostname, myorigin, mydomain
//	mydestination, inet_interfaces, proxy_interfaces    the local class
//	virtual_alias_domains, virtual_mailbox_domains, relay_domains
//	local_transport, virtual_transport, relay_transport, default_transport
//	relayhost, sender_dependent_relayhost_maps, empty_address_relayhost_maps_lookup_key
//	sender_dependent_default_transport_maps, empty_address_default_transport_maps_lookup_key
//	transport_maps, parent_domain_matches_subdomains (relay_domains, transport_maps)
//	relocated_maps
//	swap_bangpath, allow_percent_hack, append_at_myorigin, append_dot_mydomain
//	resolve_dequoted_address, resolve_null_domain, resolve_numeric_domain
//	allow_min_user, empty_address_recipient, show_user_unknown_table_name
//	smtputf8_enable, recipient_delimiter, owner_request_special, double_bounce_sender
//
// # Not built
//
// The address_verify_* variants of these parameters (the resolve_verify
// request used by address verification probes). The caching that
// trivial-rewrite does of the transport_maps "*" entry and of table
// results: every call searches the tables, so a changed table is seen at
// once. Whether a transport exists in master.cf is for the delivery side
// (mda.Dispatcher) to say.
package route
