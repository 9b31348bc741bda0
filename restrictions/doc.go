// Package restrictions evaluates Postfix's smtpd access restrictions:
// smtpd_client_restrictions, smtpd_helo_restrictions,
// smtpd_sender_restrictions, smtpd_relay_restrictions,
// smtpd_recipient_restrictions, smtpd_data_restrictions,
// smtpd_end_of_data_restrictions, smtpd_etrn_restrictions and the
// restriction classes of smtpd_restriction_classes.
//
// A Checker is built once, from typed Go values (New) or from a main.cf
// (FromConfig), and then answers Check(ctx, stage, snapshot): a Snapshot
// holds what the SMTP server knows at that moment (client address and
// names, HELO, TLS, SASL login, sender, recipient), and the Decision says
// whether the command is accepted, with the exact reply Postfix would send
// (`554 5.7.1 <x@example.com>: Relay access denied`) and the actions that
// take effect later (HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND). No
// network server is involved, which is how mail policy gets unit-tested in
// application code; the SMTP server calls the same Checker at each stage.
//
// The evaluation follows Postfix 3.7's smtpd_check.c (spec §3, §4):
//   - the first restriction that permits or rejects ends the list; DUNNO
//     and the end of the list go on to the next stage;
//   - with smtpd_delay_reject (the default) the client, HELO and sender
//     lists are evaluated again at every RCPT and at ETRN, and their
//     rejections become the RCPT reply;
//   - a permit in smtpd_relay_restrictions does not skip
//     smtpd_recipient_restrictions: both lists run unless one rejects;
//   - defer_if_permit carries from client to HELO to sender to RCPT,
//     defer_if_reject lasts one stage, warn_if_reject turns the next
//     rejection into a logged warning, DISCARD switches off every later
//     check of the transaction;
//   - "RCPT TO:<postmaster>" (no domain) is always accepted;
//   - a lookup table error answers 451 4.3.0, a configuration error
//     451 4.3.5, both with a warning, never a crash.
//
// New refuses a configuration in which neither the relay nor the
// recipient list holds a working reject_unauth_destination-class
// restriction, as Postfix's smtpd refuses to start.
package restrictions
