// Package smtp is postkit's smtp(8) and lmtp(8) delivery agent: a
// queue.Deliverer that sends each delivery request to the next hop over
// SMTP or LMTP (spec §8.6), on package smtpclient.
//
//	agent, err := smtp.FromConfig(ctx, cfg, "smtp", smtp.Options{Resolver: res})
//	results := agent.Deliver(ctx, delivery) // one queue.Result per recipient
//	defer agent.Close()                     // QUIT to the cached sessions
//
// # Routing
//
// Nexthop forms (the router's transport_maps/relayhost result): "domain"
// (MX lookup), "domain:port", "[host]" and "[host]:port" (no MX),
// "[192.0.2.1]", "[ipv6:2001:db8::1]", several of them separated by commas
// or spaces, then smtp_fallback_relay. An empty nexthop means the first
// recipient's domain. For LMTP: "unix:/path", "inet:host[:port]" and
// "host[:port]", never with MX lookups.
//
// For a domain: MX records by preference, equal preferences (and the
// addresses of one host) in random order unless smtp_randomize_addresses =
// no; no MX records → the domain's own A/AAAA records; a null MX (RFC
// 7505) → bounce 5.1.0 "Domain X does not accept mail (nullMX)", as
// Postfix 3.7 (RFC 7505 suggests 5.1.10; Postfix's code is kept); MX hosts
// without addresses → 5.4.4 "no MX host for X has a valid address record"
// (4.4.4 with smtp_defer_if_no_mx_address_found); our own address
// (inet_interfaces, proxy_interfaces) removes itself and every worse MX, and
// 5.4.6 "mail for X loops back to myself" when we were the best (like
// the EHLO reply naming us, checked only for servers on port 25, as
// Postfix's smtp(8) does: a filter on [127.0.0.1]:10025 is no loop);
// smtp_mx_address_limit addresses are tried, at most smtp_mx_session_limit
// sessions. A null MX or a loop ends the request; other DNS failures move
// on to the next destination (and smtp_fallback_relay, which Postfix
// documents for destinations "that can't be found or that are
// unreachable"). DNS errors give Postfix's texts: "Host or domain name not
// found. Name service error for name=X type=A: Host not found" (5.4.4), "...
// Host not found, try again" (4.4.3).
//
// Each address in turn: a refused or timed-out connection, a 4xx greeting
// (or a 5xx one, which defers unless smtp_skip_5xx_greeting = no), a refused
// HELO, a TLS or SASL failure or a lost connection moves on to the next
// address. Inside a session a 5xx is final: MAIL FROM bounces every
// recipient, RCPT TO only its recipient, DATA and end of data those accepted;
// a 4xx defers, or leaves the recipient for the next server until the last
// one (Postfix's "final server"). LMTP's per-recipient replies after the
// message are applied one by one. The reasons, DSN codes and relay= of
// every one of these cases were compared with Postfix 3.7's smtp(8) log
// lines (oracle_test.go): "host X[ip] said: 550 5.1.1 ... (in reply to RCPT
// TO command)", "connect to X[ip]:25: Connection refused", "host X[ip]
// refused to talk to me: ...", "lost connection with X[ip] while sending
// RCPT TO", "conversation with X[ip] timed out while ...". Result.Site marks
// failures of the destination (connection, greeting, HELO, TLS, SASL);
// Result.Conn and Result.Xfer split the time into setup and transmission.
//
// # TLS
//
// smtp_tls_security_level and smtp_tls_policy_maps (looked up with the
// nexthop as written, then ".parent" domains of an MX domain; "level
// match=a:b" values): none; may (STARTTLS when offered, no certificate
// check; after a failed handshake a plaintext retry only as Postfix allows
// it: for a message that waited minimal_backoff_time before this attempt,
// and never to a server with SASL credentials); encrypt (STARTTLS
// required, 4.7.4 "TLS is required, but was not offered by host X[ip]");
// verify (chain checked against smtp_tls_CAfile, or Options.TLSConfig's
// RootCAs, name per smtp_tls_verify_cert_match, default hostname = the MX
// name); secure (smtp_tls_secure_cert_match, default nexthop and
// dot-nexthop). Failures defer with 4.7.5 "Server certificate not verified"
// or "Cannot start TLS: handshake failure". DANE: postkit's resolver does
// not validate DNSSEC, so there are never usable TLSA records: "dane" is
// treated as "may" (what Postfix does without usable TLSA records) and
// "dane-only" defers with 4.7.5. smtp_tls_cert_file/smtp_tls_key_file give
// a client certificate.
//
// # SASL
//
// smtp_sasl_auth_enable with smtp_sasl_password_maps ("user:password";
// keys: the sender and "@domain" with smtp_sender_dependent_authentication,
// the nexthop as written, the server's host name, "[host]:port", "[host]",
// the nexthop domain), mechanisms CRAM-MD5, PLAIN, LOGIN filtered by
// smtp_sasl_security_options / smtp_sasl_tls_security_options (Postfix's
// default noplaintext forbids PLAIN and LOGIN: set "noanonymous" for a
// relay that only offers them). Failures defer (smtp_sasl_auth_soft_bounce
// = yes), in Postfix's words.
//
// # Other parameters
//
// The smtp_*_timeout family, smtp_helo_name, smtp_tcp_port, inet_protocols,
// smtp_address_preference, smtp_bind_address(6), smtp_tls_servername (SNI),
// smtp_tls_protocols and smtp_tls_mandatory_protocols (the minimum
// version), smtp_sasl_mechanism_filter, smtp_skip_quit_response,
// smtp_never_send_ehlo, smtp_line_length_limit,
// disable_mime_output_conversion (8BITMIME → quoted-printable for servers
// without 8BITMIME), smtp_generic_maps (envelope sender and recipients,
// and the sender- and recipient-type headers through package rewrite),
// ignore_mx_lookup_error, smtp_connection_cache_time_limit (idle sessions
// kept per destination and reused after RSET; negative turns the cache off)
// and smtp_connection_reuse_time_limit (at most 8 idle sessions per
// destination). For the lmtp transport, each
// smtp_X is read as lmtp_X (lmtp_lhlo_name, lmtp_tcp_port, ...). DSN
// parameters (NOTIFY, ORCPT, RET, ENVID) pass through when the server offers
// DSN; SIZE is checked against the server's limit (5.3.4).
//
// # Not built
//
// DANE and DNSSEC; the plaintext retry after a TLS session that broke
// after its handshake (Postfix's PLAINTEXT_FALLBACK_OK_AFTER_TLS_SESSION_FAILURE:
// such recipients go to the next server or are deferred); smtp_tls_fingerprint and the "fingerprint" level;
// smtp_tls_ciphers and friends (Go's cipher suites), a protocol maximum or
// a gap in smtp_tls_protocols;
// smtp_connection_cache_on_demand's backlog test (every healthy session is
// cached for smtp_connection_cache_time_limit); conn_use= accounting in
// the Result; XFORWARD; smtp_balance_inet_protocols; BDAT; SMTPUTF8 header
// downgrade; host names in inet_interfaces are resolved with the system
// resolver, not Options.Resolver.
package smtp
