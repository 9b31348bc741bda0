// Package mda holds postkit's delivery agents, the parts behind the
// queue's delivery seam (queue.Deliverer) that Postfix runs as
// master.cf services: local(8) in mda/local, virtual(8) in mda/virtual,
// pipe(8) in mda/pipe, smtp(8) and lmtp(8) in mda/smtp. This root
// package has what they share and the small agents:
//
//   - Dispatcher, the queue's Deliverer in a whole MTA: it hands each
//     delivery request to the agent named by its transport, as Postfix's
//     queue manager connects to the master.cf service of that name; a
//     transport without an agent defers with Postfix's "mail transport
//     unavailable" (dsn 4.3.0).
//   - Discard, Error and Retry: discard(8), error(8) and retry(8), with
//     the texts Postfix 3.7 logs for transport_maps entries such as
//     "discard:", "error:5.1.1 go away" and "retry:4.7.1 later"
//     (checked by oracle_test.go against a private Postfix).
//   - ReadMasterCF and ParseMasterCF: master.cf (master(5)) into Service
//     values (name, type, the y/n/wakeup/process-limit columns, command,
//     arguments with { } groups, -o overrides), with errors that name the
//     file and line; the result is compared field by field with what
//     postconf -F and -P report for the same file.
//   - Resubmitter and NewCleanupResubmitter: forwarding (aliases,
//     .forward) queues a new message through cleanup, keeping the
//     original's arrival time, BODY=, SMTPUTF8, RET and ENVID.
//   - DeliveryHeaders, HasDeliveredTo, DeliveredTo and NewLFReader
//     (deliverhdr.go): the Return-Path, X-Original-To and Delivered-To
//     headers, the Delivered-To loop check and CRLF to LF conversion for
//     mailbox stores.
//   - RunAs: a store or a file read with a user's file system rights
//     (setfsuid/setfsgid on one locked OS thread, Linux amd64 and arm64),
//     Postfix's set_eugid for agents that run as root.
//
// Agents return one queue.Result per recipient; the scheduler writes
// the "to=<...>, relay=..., dsn=..., status=... (reason)" lines from
// them (spec §8.7), so agents log only their own warnings.
//
// Not built: master.cf process attributes (private, unprivileged,
// chroot, wakeup, maxproc) are parsed and kept but do nothing, since
// postkit runs agents in one process; Postfix's "-o" overrides are
// returned for the caller to apply. Forwarded mail goes through
// cleanup's full pipeline (content checks, BCC and milters included),
// where Postfix's local(8) turns some of these off for it
// (CLEANUP_FLAG_MASK_INTERNAL), because cleanup.Input has no switch for
// that yet.
package mda
