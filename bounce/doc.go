// Package bounce writes delivery status notifications (DSNs) the way
// Postfix's bounce(8) daemon does: non-delivery notices, delay warnings
// and success notices as RFC 3464 multipart/report messages, the copies
// for the postmaster that notify_classes asks for, and double bounces.
//
// It is a pure function of plain values: the queue hands it the original
// message's envelope, a result per recipient and the original content, and
// gets back complete messages (CRLF lines) with their envelope sender and
// recipient, ready to be queued like any other mail. It reads no queue
// files and sends nothing, so the rules (who gets a notice, what is
// attached, which fields appear) can be tested without a mail system.
//
// The MIME structure, the message headers and every field of the
// delivery-status part match Postfix 3.7 (they are compared with a
// private Postfix in the tests). The human-readable text is postkit's own
// wording; bounce_template_file (bounce(5) format: failure_template,
// delay_template, success_template, verify_template) replaces it, so an
// administrator can keep Postfix's text or their own.
//
// The rules, with the Postfix parameters they follow:
//
//   - A failed recipient gets the sender a non-delivery notice unless its
//     NOTIFY (RFC 3461 4.1) leaves out FAILURE. A delayed recipient gets a
//     delay warning unless NOTIFY leaves out DELAY; a delivered, relayed
//     or expanded one gets a success notice only when NOTIFY has SUCCESS.
//   - Mail from the null sender never gets a notice back. When it fails,
//     the postmaster gets a double bounce (2bounce_notice_recipient) if
//     notify_classes has "2bounce"; otherwise it is dropped. Mail from
//     double_bounce_sender gets nothing at all.
//   - notify_classes "bounce" and "delay" send the postmaster
//     (bounce_notice_recipient, delay_notice_recipient) a copy with the
//     message headers only, from double_bounce_sender, whatever the
//     recipients' NOTIFY says.
//   - A non-delivery notice to the sender (and a double bounce) returns
//     the whole message (message/rfc822) for RET=FULL or no RET, unless it
//     is larger than bounce_size_limit; otherwise, and for RET=HDRS, it
//     returns the header section (text/rfc822-headers). Delay warnings,
//     success notices and postmaster copies always carry the headers
//     only. Mail received with SMTPUTF8 gets the RFC 6533 types
//     (message/global-delivery-status, message/global,
//     message/global-headers) and utf-8 Final-Recipient addresses.
//   - Recipients are listed sorted by address, the order in which
//     Postfix's queue manager delivers and so reports them.
//   - Template text may use main.cf parameters and bounce(5)'s variables;
//     an undefined $name is an error, found by FromConfig at start.
//
// What Postfix's cleanup adds to a notice (Received:, Message-Id: with
// the notice's own queue ID) is written here too when Settings.NewID
// supplies that ID, so the result can be queued as is.
// NewNotifier(settings, NewCleanupSubmitter(c)) is the usual wiring: it
// opens each notice in cleanup first, so the notice carries its own queue
// ID, and logs Postfix's "ORIGID: sender non-delivery notification: NEWID".
package bounce
