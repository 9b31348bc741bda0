// Package smtpclient is postkit's SMTP and LMTP client: the protocol half
// of Postfix's smtp(8) and lmtp(8), on buffered line I/O over a net.Conn.
//
// It exists because an MTA needs more from a client than a mail submitter
// does (../shared/docs/go-libraries.md §1.10): every reply with its code,
// enhanced status code and all its lines, per command and per recipient,
// so the delivery agent can bounce one recipient and defer another; the
// stage at which a connection was lost or timed out, in the words Postfix
// logs; a timeout per protocol stage; pipelined transactions; LMTP's one
// reply per recipient; and the 8BITMIME-to-7bit conversion. The delivery
// agent that routes mail and decides what each reply means is package
// mda/smtp; this package only speaks the protocol.
//
// # Use
//
//	c, err := smtpclient.Dial(ctx, "tcp", "mx.example.com:25", smtpclient.Options{LocalName: "me.example.org"})
//	err = c.Hello(ctx)                        // EHLO, HELO if EHLO is refused
//	err = c.StartTLS(ctx, &tls.Config{...})   // when c.Extensions().StartTLS
//	err = c.Auth(ctx, smtpclient.Plain("", "user", "pass"))
//	res, err := c.Send(ctx, &smtpclient.Envelope{From: ..., Rcpts: ...}, body)
//	// res.Mail, res.Rcpt[i], res.Data, res.Final[i]: one Reply each
//	err = c.Reset(ctx)                        // before reusing the session
//	err = c.Quit(ctx)
//
// Errors are typed: *ReplyError (a refusal, naming the command as Postfix
// does: "RCPT TO command", "end of DATA command"), *Error (the connection
// was lost or timed out while "sending RCPT TO", "receiving the initial
// server greeting", ...), *TLSError, *SizeError, *BodyError,
// ErrSMTPUTF8Required, ErrAuthLoop. Send reports refusals in its Result
// rather than as errors, because one transaction can have several.
//
// # What it does
//
//   - Replies (RFC 5321 4.2): multi-line, bare-code and LF-only lines; the
//     RFC 3463 code is taken from the first line when its class matches the
//     reply; lines over MaxReplyLineLength and replies over MaxReplyLines are
//     refused. Reply.String joins the lines as Postfix's log shows them.
//   - EHLO/LHLO with the extensions PIPELINING, SIZE, 8BITMIME, DSN,
//     SMTPUTF8, STARTTLS, AUTH (also the old "AUTH=" form),
//     ENHANCEDSTATUSCODES and CHUNKING (recognised, not used); HELO when EHLO
//     is refused or smtp_never_send_ehlo is set.
//   - STARTTLS (RFC 3207) with a caller-built tls.Config, and EHLO again.
//   - AUTH (RFC 4954) with PLAIN, LOGIN and CRAM-MD5, or any Mechanism.
//   - MAIL FROM with SIZE, BODY, SMTPUTF8, RET and ENVID; RCPT TO with NOTIFY
//     and ORCPT; the DSN parameters only when the server offers DSN, ENVID
//     and ORCPT as xtext (RFC 3461 4); quoted local parts re-quoted.
//   - PIPELINING (RFC 2920): MAIL, the RCPTs and DATA are sent in groups of
//     Options.PipelineBatch commands; a 421 ends the reading early.
//   - DATA streamed from an io.Reader: LF or CRLF line ends become CRLF,
//     leading dots are doubled, lines over smtp_line_length_limit (998) are
//     broken with CRLF SPACE as Postfix does.
//   - 8BITMIME downgrade: for a message sent with BODY=8BITMIME to a server
//     without 8BITMIME, MIME parts declared "8bit" or "binary" are re-encoded
//     quoted-printable, following multipart boundaries and message/rfc822
//     parts, unless disable_mime_output_conversion is set. Like Postfix, it
//     converts only what is declared 8bit, leaves headers and undeclared
//     8-bit bodies alone, and breaks encoded lines the same way (the result
//     is compared byte for byte with Postfix's in mda/smtp's oracle test).
//   - LMTP (RFC 2033): one reply per accepted recipient after the message.
//   - Per-stage timeouts with Postfix's defaults (Timeouts), and a context
//     that, when cancelled, ends whatever I/O is under way.
//
// Postfix parameters honoured through Options: smtp_connect_timeout,
// smtp_helo_timeout, smtp_starttls_timeout, smtp_mail_timeout,
// smtp_rcpt_timeout, smtp_data_init_timeout, smtp_data_xfer_timeout (each
// write), smtp_data_done_timeout, smtp_rset_timeout, smtp_quit_timeout,
// smtp_helo_name / lmtp_lhlo_name, smtp_never_send_ehlo,
// smtp_line_length_limit and disable_mime_output_conversion; QuitNoWait is
// smtp_skip_quit_response = yes.
//
// # Not built
//
// BDAT/CHUNKING and BINARYMIME (messages are sent with DATA), XFORWARD and
// XCLIENT, SCRAM and other SASL mechanisms, header downgrade for SMTPUTF8
// (mail that needs SMTPUTF8 is refused with ErrSMTPUTF8Required when the
// server lacks it, as Postfix bounces it), and REQUIRETLS.
package smtpclient
