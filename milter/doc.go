// Package milter is the MTA side of the Sendmail milter protocol: it hands
// one message, with its SMTP envelope, to the mail filters configured in
// Postfix's smtpd_milters or non_smtpd_milters and collects what they decide
// (accept, reject, tempfail, discard, quarantine, a custom SMTP reply) and the
// changes they ask for (headers, recipients, sender, body).
//
// Postfix talks to milters while the SMTP conversation is still going; postkit
// calls them once the message is complete (Config.Run), replaying the
// conversation in the order Postfix would have sent it: connect, HELO, MAIL,
// each RCPT, DATA, the headers, end of headers, the body and end of message.
// Every stage goes to all milters in turn; from the headers on, each milter
// sees the message as the milters before it changed it, as in Postfix.
// Result.Apply then rewrites the message bytes the way Postfix's cleanup
// would.
//
// The wire protocol (negotiation, packets, macros) comes from
// github.com/d--j/go-milter's client; this package adds what Postfix does
// around it: the milter list syntax with per-milter settings, the timeouts,
// milter_default_action, the default macro lists, the replies Postfix gives
// when a milter gives none, and the header index rules of the modification
// actions.
//
// What the milters are shown and how their answers are applied was checked
// against Postfix 3.7 (tests run the same milter behind a private Postfix
// and compare the queue files): Postfix hides its own Received: header from
// milters but counts it in SMFIR_INSHEADER positions (Envelope.SkipFirstHeader),
// writes "Name: value" unless the milter negotiated SMFIP_HDR_LEADSPC, names
// a client without a host name "[address]", sends the queue ID ("i") from
// DATA on, and shows local submission (non_smtpd_milters, Envelope.Local)
// as client localhost [127.0.0.1]. Deleting a recipient matches it exactly.
//
// A Config is safe for concurrent use; every Run opens its own connections
// (Postfix, too, uses one milter connection per SMTP session).
//
// Supported main.cf parameters: smtpd_milters, non_smtpd_milters,
// milter_default_action, milter_connect_timeout, milter_command_timeout,
// milter_content_timeout, milter_protocol, milter_connect_macros,
// milter_helo_macros, milter_mail_macros, milter_rcpt_macros,
// milter_data_macros, milter_end_of_header_macros,
// milter_end_of_data_macros, milter_macro_daemon_name, milter_macro_v,
// milter_macro_defaults, smtpd_milter_maps.
package milter
