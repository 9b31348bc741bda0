// Package pipe is Postfix's pipe(8) delivery agent: it hands a message
// to a command named in a master.cf service, for example Dovecot's LDA,
// maildrop, a list manager or a script:
//
//	dovecot unix - n n - - pipe
//	  flags=DRhu user=vmail:vmail argv=/usr/lib/dovecot/dovecot-lda -f ${sender} -d ${recipient}
//
// New reads the service (mda.ParseMasterCF) and main.cf. The command is
// run directly, never through a shell; argv[0] without a '/' is looked
// up in /usr/bin:/bin.
//
// Attributes (spec §8.5): flags= (F From_ line, R Return-Path, D
// Delivered-To plus the loop check, O X-Original-To, X final delivery,
// . dot-stuffing, > >From quoting, B blank line at the end, h, q and u
// for the macros below), user=name[:group] (required; root, group 0
// and mail_owner are refused), size= (larger messages bounce with
// "5.2.3 message too large"), eol= (with \r \n \t escapes),
// directory= (default: queue_directory if it exists, else "/"),
// null_sender= (default MAILER-DAEMON), argv= (last).
//
// Macros, in any argument as ${name}, $(name) or $name ($$ is '$'):
// sender, recipient, original_recipient, user, extension, mailbox,
// domain, nexthop, size, queue_id, client_address, client_helo,
// client_hostname, client_port, client_protocol, sasl_method,
// sasl_sender, sasl_username. An argument that uses one of the
// recipient macros (recipient, original_recipient, user, extension,
// mailbox, domain) becomes one argument per recipient. An unknown macro
// is an error when the service is set up.
//
// Results, as Postfix 3.7 gives them (TestMatchesPostfix runs the same
// services in a private Postfix and compares what the command received,
// byte for byte, and every log text): exit 0 is "delivered via SERVICE
// service" (plus " (output)" when the command printed something);
// output that starts with an RFC 3463 code ("4.2.2 mailbox full")
// decides the status whatever the exit code; sysexits codes map to
// Postfix's status and text (75 "4.3.0 temporary failure", 67 "5.1.1
// user unknown", ...); other exit codes bounce with "Command died with
// status N: "CMD"", a signal defers with "Command died with signal N",
// and SERVICE_time_limit (default command_time_limit) kills the
// command's process group and bounces with "Command time limit
// exceeded"; a queue file that cannot be read to the end defers with
// "4.3.0 error reading message: ..." whatever the command did with the
// part it got. Up to 4096 bytes of output follow as ". Command output:
// ...". A command that cannot be executed defers with the text Postfix's
// child prints ("temporary failure. Command output: pipe: fatal:
// pipe_command: execvp CMD: No such file or directory"). The relay= of
// the log line is the service name.
//
// The environment is Postfix's: the export_environment variables of
// those import_environment provides (LANG=C, MAIL_CONFIG the config
// directory, TZ...) and PATH=/usr/bin:/bin.
//
// Privileges: running as root, the command runs as user= with that
// group as its only group. Not running as root it runs as the process's
// own user; user= is still required and checked.
//
// Flags D and O need one recipient per request
// (SERVICE_destination_recipient_limit = 1); with more the request is
// deferred with "4.3.5 mail system configuration error", as Postfix
// does.
//
// Not built: chroot= (refused unless empty or "/").
package pipe
