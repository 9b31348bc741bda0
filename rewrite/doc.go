// Package rewrite is Postfix's address rewriting: the canonical form that
// trivial-rewrite gives every address, the mappings cleanup applies to
// envelope and header addresses (canonical maps, masquerading, virtual
// alias expansion), and the generic mapping the SMTP and LMTP clients
// apply to outgoing mail. cleanup calls it for every message; mda calls
// Generic.
//
// It exists as its own package because the rules are subtle and
// observable: the order of the steps, the lookup keys, the recursion and
// self-mapping rules, and the exact text of a regenerated header all show
// in the queued message. Each rule here was compared with Postfix 3.7
// (see oracle_test.go), and the code cites the Postfix parameter or source
// file it follows.
//
// # Using it
//
//	rw, err := rewrite.FromConfig(ctx, cfg, "smtp") // main.cf
//	// or: c := rewrite.Defaults("example.com", "example.com"); c.VirtualAliasMaps = maps.List{m}; rw, err := rewrite.New(c)
//	sender, err := rw.Sender(ctx, "joe", false)          // "joe@example.com"
//	rcpt, err := rw.Recipient(ctx, "sales@example.com", false)
//	final, err := rw.VirtualAlias(ctx, rcpt)              // []string
//	value, changed, err := rw.HeaderLine(ctx, "To", " sales,\r\n bob@x\r\n", "", false)
//
// Addresses are in internal form (unquoted local part, "" for the null
// sender), as package address produces. Every table is a maps.Map and is
// searched with the key order of maps.MappingStrategy (Postfix's
// MA_FIND_DEFAULT: user+ext@domain, user@domain, user+ext and user when
// the domain is local, @domain; derived keys only for fixed-key tables).
//
// # The canonical form (trivial-rewrite, spec §6.1)
//
// A lone "@" becomes the null address; a source route (@a,@b:user@c) is
// removed; an address without '@' gets, in this order of preference,
// swap_bangpath (site!user → user@site), allow_percent_hack
// (user%site → user@site), or append_at_myorigin (user → user@$myorigin);
// append_dot_mydomain appends .$mydomain to a domain without a dot; one
// trailing dot is removed. Envelope addresses always use the local context
// ($myorigin, $mydomain); header addresses of remote mail use
// remote_header_rewrite_domain for both, and are not rewritten at all when
// it is empty (the caller decides; see Header).
//
// # Envelope sender and recipients (cleanup, spec §6.2)
//
// Sender: canonical form; MAILER-DAEMON in canonical form becomes the null
// sender; sender_canonical_maps, canonical_maps and masquerading, each
// when envelope_sender is in its class parameter. Recipient: the null
// recipient becomes empty_address_recipient; canonical form;
// recipient_canonical_maps, canonical_maps and masquerading when
// envelope_recipient is in their classes (masquerade_classes leaves it out
// by default). VirtualAlias then expands the recipient.
// receive_override_options = no_address_mappings is the noMappings
// argument: the canonical form is still applied, nothing else.
//
// Canonical mappings are one-to-one: the first of several results is used
// (with a warning), the result is looked up again until it no longer
// matches, equals its input ignoring case, or ten lookups have run. Virtual
// alias expansion is one-to-many and breadth-first in place; an address
// that maps to a list containing itself is kept and not expanded again;
// the limits return *ExpansionError and a table error a wrapped error, and
// either must defer the whole message ("4.6.0 Alias expansion error").
// A table result "@domain" keeps the original user; an unmatched
// extension is propagated to every result address when the table's class
// is in propagate_unmatched_extensions.
//
// # Header addresses (cleanup_message.c)
//
// HeaderLine and Header parse a sender-type or recipient-type header (see
// HeaderClass) with a parser that behaves like Postfix's tok822: groups,
// comments (moved after the address), quoted strings, route addresses and
// bare words (two words without a comma are two addresses). Each address
// gets the canonical form, then the canonical tables and masquerading of
// its class (header_sender or header_recipient). When something changed,
// the header is regenerated from the parse tree (local parts re-quoted,
// missing commas added, more than 250 bytes of comments and phrases around
// one address reduced to <address>), one address per line, lines joined
// while shorter than 70 bytes and continued with a TAB; otherwise it is
// reported unchanged so that the received bytes can be kept. At most
// header_address_token_limit tokens are parsed; the rest of a rewritten
// header is dropped, as Postfix drops it. Virtual aliasing never touches
// headers. HeaderAddresses lists the addresses tok822 finds in a value
// (what "sendmail -t" extracts), and GenericHeader is the SMTP client's
// generic mapping of header addresses (one lookup each, no canonical
// form), regenerated the same way.
//
// # Parameters
//
// FromConfig reads these main.cf parameters (postconf(5)); Config holds
// the same settings as Go values.
//
//	myorigin, mydomain                   the local rewriting context (myorigin may name a file, as on Debian)
//	append_at_myorigin                   user → user@$myorigin (default yes)
//	append_dot_mydomain                  user@host → user@host.$mydomain (default no)
//	swap_bangpath                        site!user → user@site (default yes)
//	allow_percent_hack                   user%site → user@site (default yes)
//	remote_header_rewrite_domain         the domain for header addresses of remote mail
//	canonical_maps                       both senders and recipients
//	sender_canonical_maps                senders only
//	recipient_canonical_maps             recipients only
//	canonical_classes                    which addresses canonical_maps rewrites
//	sender_canonical_classes             envelope_sender, header_sender
//	recipient_canonical_classes          envelope_recipient, header_recipient
//	masquerade_domains                   in order, with !domain exceptions
//	masquerade_exceptions                local parts never masqueraded (a string list, tables allowed)
//	masquerade_classes                   default envelope_sender, header_sender, header_recipient
//	virtual_alias_maps                   virtual alias expansion of recipients
//	virtual_alias_domains                kept in Config for the resolver (a string list, as Postfix's); not used by the expansion
//	virtual_alias_expansion_limit        addresses per expansion (default 1000)
//	virtual_alias_recursion_limit        nesting per address (default 1000)
//	virtual_alias_address_length_limit   length of a result address (default 1000)
//	propagate_unmatched_extensions       canonical, virtual, generic (alias, forward, include are kept for local delivery)
//	recipient_delimiter                  the extension delimiters (a set of characters)
//	owner_request_special, double_bounce_sender   local parts never split at the delimiter
//	mydestination, inet_interfaces, proxy_interfaces   which domains are local for the user and user+ext keys
//	                                     (mydestination is a string list: exact names, never subdomains)
//	empty_address_recipient              where mail to the null recipient goes (default MAILER-DAEMON)
//	header_address_token_limit           tokens parsed per header (default 10240)
//	smtp_generic_maps, lmtp_generic_maps the generic table of the prefix given to FromConfig
//
// local_header_rewrite_clients and receive_override_options are decided
// by the caller (cleanup): it passes the rewriting domain and noMappings.
package rewrite
