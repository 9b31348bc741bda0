// Package control lets postkit's queue commands (postqueue, postsuper,
// postcat, mailq) act on a running server: a small request/reply
// protocol over a unix socket, the Server that a mail server runs beside
// its queue.Scheduler, and the Client the commands use. It plays the
// roles of Postfix's public/showq (the listing) and public/qmgr and
// public/flush (the triggers), and carries postsuper's operations, which
// Postfix does on the files directly, so that the running scheduler sees
// each change at once.
//
// # Parameters
//
// The commands find the socket through main.cf's queue_directory (-c DIR
// or MAIL_CONFIG), and postqueue -s honours fast_flush_domains. The
// scheduler's own parameters (queue_run_delay and the rest) are package
// queue's.
//
// # The socket and who may use it
//
// The socket is SocketPath(queue directory), "<queue_directory>/control",
// created with mode 0600 (Server.Mode; 0660 admits the socket's group).
// Authorization is the socket's file permissions and nothing else: any
// process that can connect may list, read, flush, delete, hold, release
// and requeue mail. The queue directory itself is mode 0700, so by
// default only the user the server runs as (and root) gets in; unlike
// Postfix there is no unprivileged postqueue path through a setgid
// helper. A stale socket left by a server that died is replaced at
// Listen; the queue's own lock (queue.Open) guarantees one server per
// queue.
//
// # Protocol
//
// One request per connection. The client sends lines ending in LF, each
// at most MaxLine bytes of printable ASCII (arguments at most MaxArg, IDs at most MaxID), separated by one
// space:
//
//	mailq                      postqueue -p: the listing as text
//	mailq-json                 postqueue -j: JSON lines
//	flush                      postqueue -f: all deferred mail due now, dead destinations revived
//	flush-site SITE            postqueue -s SITE
//	deliver ID                 postqueue -i ID
//	postcat ID FLAGS           postcat -q ID; FLAGS is a subset of "ehb" or "-"
//	delete|hold|release|requeue|expire [QUEUE...]
//	ID                         postsuper -d/-h/-H/-r/-e: one queue ID per line,
//	ALL                        or ALL, up to MaxIDs lines,
//	                           ended by an empty line
//
// QUEUE limits an admin verb to the named queues (incoming, active,
// deferred, hold; corrupt for delete only); without one, postsuper's
// defaults apply (queue.AdminOp.States). The server answers with
// records, each a line:
//
//	data N        followed by N bytes of output (N <= 32768), as many as needed
//	warning TEXT  a warning for the user's standard error
//	ok N          the end: success; N counts the messages acted on (postsuper,
//	              postqueue -s), 0 otherwise
//	error KIND TEXT  the end: failure; KIND is bad-request, not-found,
//	              unavailable (no scheduler) or failed
//
// For the admin verbs the output is the IDs of the messages acted on,
// one per line (postsuper names those it was given by ID). Output is
// streamed as it is produced, so a large listing is never held
// in memory, and the final record tells the client whether it is whole.
// A request that does not parse gets "error bad-request"; one not sent
// within 30 seconds is dropped, and so is a client that does not take a
// write of the reply within Server.WriteTimeout (an hour by default, as
// Postfix's ipc_timeout). ParseRequest is fuzzed. A queue ID cannot be
// spelled "ALL" (Encode refuses it), so the ALL line is never ambiguous.
//
// # Scheduler coordination
//
// The server calls queue.Scheduler.Admin, FlushAll, FlushSite and
// DeliverNow, which make the scheduler act at once: released and
// requeued messages, and those made due by -s and -i, are handed to it
// directly instead of waiting for queue_run_delay; a message deleted
// while active gets no new attempts and nothing its deliveries in flight
// report is recorded, so it never comes back; a held active message
// finishes the attempts in flight and stays held. See queue's control.go.
//
// # What is not built
//
// The server's flush-site serves any domain; the postkit postqueue command
// checks fast_flush_domains first, as Postfix's does. There is no
// per-domain flush log: flush-site reads the deferred messages to find
// those with a pending recipient in the domain.
// postsuper -p, -s and -S are not offered; postsuper
// -r keeps the queue ID and does not run the message through cleanup
// again. There is no per-user access control beyond the socket's
// permissions.
package control
