// Package cleanup is Postfix's cleanup(8): the intake pipeline that turns
// a received message (an envelope and a stream of CRLF lines) into a
// queued one. The SMTP server (Cleanup.Handoff) and local submission
// (pickup, with Input.Local) both feed it; a Store (the queue) keeps the
// result.
//
// For each message, in Postfix's order (spec §6.2, §6.4):
//
//   - the envelope sender is rewritten (package rewrite: canonical form,
//     MAILER-DAEMON to <>, sender_canonical_maps, canonical_maps,
//     masquerading) when the content starts;
//   - the content goes through a contentcheck walker: header_checks,
//     mime_header_checks, nested_header_checks, body_checks and the MIME
//     limits; cleanup's hooks see every primary header: Received: headers
//     count as hops before the checks (hopcount_limit: 554 5.4.0 Error:
//     too many hops), a Resent- header switches the message to Resent-
//     mode, Message-Id is logged ("QUEUEID: message-id=<...>"),
//     sender- and recipient-type header addresses are rewritten (only in
//     the header rewriting context, see below; virtual aliases never
//     touch headers), message_drop_headers are removed (after sendmail -t
//     took its recipients from them), and at the end of the headers the
//     missing Message-Id, Date, From (header_from_format) and
//     undisclosed_recipients_header are added (or their Resent-
//     versions);
//   - at Commit each recipient is rewritten (recipient_canonical_maps,
//     canonical_maps, masquerading if envelope_recipient is in
//     masquerade_classes) and expanded through virtual_alias_maps; an
//     expansion over a limit defers the message (451 4.6.0 Alias
//     expansion error) and a table error defers it too (451 4.3.0);
//     duplicates are removed (with enable_original_recipient the key is
//     ORCPT, NOTIFY, original and final address, otherwise the final
//     address); sender_bcc_maps, recipient_bcc_maps and always_bcc add
//     recipients with NOTIFY=NEVER; the BCC, HOLD, DISCARD, FILTER and
//     REDIRECT of the SMTP restrictions and of the content checks are
//     applied (REDIRECT replaces every recipient with its canonical form);
//   - a refusal (a REJECT, too many hops, message_size_limit, a milter)
//     aborts the queue file and returns a *RejectError (the SMTP client
//     gets its reply at the end of DATA); a DISCARD aborts it and returns
//     nil (the client gets 250); otherwise the Store's File is committed
//     (durably) with the Envelope.
//
// # Header rewriting context
//
// Header addresses are rewritten, and missing headers added, only for
// local mail (Input.Local: sendmail/pickup), for SMTP clients matching
// local_header_rewrite_clients (default permit_inet_interfaces: the
// client is this host), or, for other clients, when
// remote_header_rewrite_domain is set (incomplete addresses then get that
// domain). always_add_missing_headers = yes adds the missing headers to
// all mail. A header whose addresses do not change keeps its bytes as
// received, as in Postfix (checked against Postfix 3.7), so DKIM
// signatures survive; a changed one is regenerated and folded as Postfix
// does.
//
// # Parameters read by FromConfig
//
// myhostname, hopcount_limit, always_add_missing_headers,
// message_drop_headers, undisclosed_recipients_header,
// header_from_format, enable_original_recipient, enable_long_queue_ids,
// always_bcc, sender_bcc_maps, recipient_bcc_maps, content_filter,
// receive_override_options (no_address_mappings, no_header_body_checks,
// no_milters), local_header_rewrite_clients (permit_inet_interfaces,
// permit_mynetworks, permit_sasl_authenticated, check_address_map;
// permit_tls_clientcerts is accepted and never matches),
// remote_header_rewrite_domain, message_size_limit; the rewrite and
// contentcheck packages read their own parameters.
//
// # Milters and DKIM
//
// smtpd_milters (mail from the SMTP server) and non_smtpd_milters (local
// submission) run once per message with milter_default_action, the
// milter timeouts and macros (package milter), unless
// receive_override_options has no_milters. Postfix talks to milters during
// the SMTP dialogue; cleanup runs them after the content checks, over the
// content as it will be queued, before the queue file is committed. For
// that the content is spooled to a temporary file (Config.TempDir, deleted
// at once) before it goes to the Store whenever milters or DKIM are
// configured; the milters' reject, tempfail, discard, quarantine (HOLD)
// and their header, body, sender and recipient changes are then applied,
// with "QUEUEID: milter-reject: END-OF-MESSAGE from ..." style log lines.
//
// DKIM (package dkim) is configured by postkit parameters, not Postfix's
// (Postfix leaves DKIM to a milter such as opendkim):
//
//	postkit_dkim_key_table = type:table
//	    sender address, domain or .parent domain -> selector:/path/key.pem
//	    or domain:selector:/path/key.pem; a message whose sender has a key
//	    is signed (a DKIM-Signature header on top), after the milters.
//	postkit_dkim_signing_clients = permit_mynetworks, permit_sasl_authenticated
//	    the SMTP clients whose mail is signed (same items as
//	    local_header_rewrite_clients); local submission is always signed.
//	postkit_dkim_verify = no
//	    yes: the DKIM signatures of all other mail are checked and the
//	    result is prepended as "Authentication-Results: AUTHSERV-ID;
//	    dkim=pass ..." (DNS through the system resolver).
//	postkit_dkim_authserv_id = $myhostname
//
// # Known differences from Postfix 3.7
//
//   - REDIRECT keeps the recipients and sets Envelope.Redirect, as
//     Postfix's queue file does; the queue applies it.
//   - With XCLIENT, Postfix decides the header rewriting context from the
//     connection before XCLIENT; postkit uses the XCLIENT address.
//   - An alias that expands to several addresses with NOTIFY=SUCCESS loses
//     SUCCESS as in Postfix, but no "expanded" DSN is produced for it yet.
//
// # Store
//
// DirStore is a simple durable Store (one content file and one JSON
// envelope file per message, fsynced with their directory) for tests and
// small programs. The queue (issue 6) implements Store with Postfix's
// queue directories and replaces DirStore in a real MTA.
package cleanup
