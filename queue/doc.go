// Package queue is the durable message store of Postfix's queue
// (qmgr's queue directories, spec §7): cleanup commits messages into it,
// the scheduler moves them between states and records per-recipient
// delivery statuses, and the admin commands (postqueue, postsuper,
// postcat) list and read it. It implements cleanup.Store.
//
// Its first duty is never to lose a message it acknowledged: File.Commit
// returns nil only when the message's content, envelope and name are on
// disk (the file and its directory fsynced, or a copy of the file in the
// fsynced commit journal), and the SMTP server sends 250 only then
// (DESIGN.md, Durability).
//
// # Layout
//
// A queue directory holds the file VERSION ("postkit-queue 1", the
// format version and the lock: one process opens a queue at a time), the
// commit journal (empty after a clean Close) and the state directories
// incoming, active, deferred, hold and corrupt (mode 0700, files 0600). A message is one file named by its queue ID in
// the directory of its state; moving it is a rename. A deferred file's
// modification time is its next retry time, as in Postfix. There are no
// bounce/defer/trace directories: each recipient's status (what Postfix
// writes to those logs) is a record appended to the queue file itself, so
// a message and its statuses cannot get separated. There is no hashing
// into subdirectories (hash_queue_names) and no maildrop (see package
// pickup).
//
// # Queue IDs
//
// IDs are Postfix's long form (enable_long_queue_ids = yes, spec §7.2):
// the creation time in base 52 (six or more characters of seconds, four of
// microseconds), 'z', and the queue file's inode number in base 51, e.g.
// "4Yxk3B5xWJzBq2". No two files that exist at the same time share an
// inode, so IDs are unique among queued messages whatever the clock does,
// across restarts and concurrent creators; within a process the time part
// strictly increases, so IDs sort in creation order (List).
//
// # The queue file
//
// See format.go: a 16-byte header (magic, version, content length), the
// content as written, then checksummed records: the envelope (every
// cleanup.Envelope field, the CRC-32C of the content, and where the
// headers end) and any number of appended status records. A file that
// fails a checksum or does not parse is corrupt: Read refuses it with
// ErrCorrupt and Open moves it to corrupt/ (logged and listed in
// Recovery); nothing in corrupt/ is ever delivered or deleted by the
// queue. A status record torn by a crash is ignored and overwritten by the
// next one; that can lose only an unacknowledged status, so at worst a
// recipient is tried again.
//
// # Commit and crash safety
//
// Create makes incoming/.<pid>-<n> (a name starting with '.' means "not
// committed") and the ID is known at once; Write streams the content
// through a 32 KB buffer. Commit appends the envelope and fills in the
// header; then one of two paths makes the message durable before Commit
// returns.
//
// Without group commit (Options.NoGroupCommit), and with it for messages
// over 256 KB: fsync the file, rename it to incoming/ID (hold/ID when
// Envelope.Hold), fsync the directory (shared by the batch with group
// commit). Whatever instant a crash hits: before the rename only a '.'
// name exists, and Open removes it (never acknowledged); after the rename
// the name points at a file already fsynced whole; after the directory
// fsync the message is durable and Commit may return.
//
// With group commit (the default) for messages up to 256 KB, the commit
// journal (journal.go): a committer goroutine takes every Commit that
// arrived while it was busy, appends a checksummed copy of each queue file
// to the file "journal", fdatasyncs it once for the whole batch, then
// renames the files and answers them all. Before that fdatasync, a crash
// leaves only '.' names and a torn journal tail, both discarded (never
// acknowledged). After it, Open's replay rewrites every journaled
// message whose file is missing or fails its checksum, so the queue files
// themselves need no fsync at commit. A checkpoint (journal over 32 MB,
// and Close) fsyncs the journaled files still queued and the directories
// and empties the journal. Remove writes a tombstone to the journal,
// durable before the unlink, instead of fsyncing the directory; replay
// deletes tombstoned files. A message committed and removed between two
// checkpoints (the common case when delivery is quick) thus costs a share
// of two journal fdatasyncs and nothing else. Stats counts every fsync.
//
// Either way a crash can at worst deliver an unacknowledged message (the
// disk had it when the process died before answering; the client will
// resend it), never lose an acknowledged one. The admin moves (Defer,
// Hold, Release, Requeue, Move to any state but active) and status
// records (MarkRecipients, SetAttr: file fsync plus directory fsync) are
// durable before they return.
//
// The scheduler's own moves are not synced, as Postfix's qmgr syncs none
// of its moves: into active (Move, and taking a message from incoming or
// deferred), back to incoming at Stop, and to deferred after an attempt.
// A crash leaves the file in its old state or its new one (a rename
// reaches the disk whole), and Open sends active back to incoming, so at
// worst the message is tried again sooner, with the statuses recorded so
// far; journal replay finds a message in whichever state holds it. When
// an attempt leaves no recipient to try again, the last batch's statuses
// are not recorded: the notices go out and the durable Remove follows
// (recorded after all if the message stays, e.g. a notice could not be
// handed over). A crash between that delivery and the removal's
// tombstone delivers the pass's recipients again, as a crash before the
// status record did before; a message that stays queued with some
// recipients done always has them recorded first. Per message delivered
// at once, the queue's delivery path thus costs a share of the journal
// fdatasync of the removals' tombstones (one directory fsync without
// group commit), where it cost the move's two directory fsyncs and the
// status record's file and directory fsyncs besides. The scheduler's
// removal keeps the file's inode as a spare (incoming/.spare-*, made
// before the removal and never a message) that Create overwrites
// instead of allocating a new one (see osfs.go for why); Open deletes
// spares like any other '.' file.
//
// Open recovers: the journal is replayed, uncommitted files are removed,
// messages in active go back to incoming (the scheduler takes them up
// again, as Postfix's qmgr does at start), and the files in incoming and active (all states with
// Options.VerifyAll) are checked whole; damaged ones go to corrupt. None
// of this is synced: a crash during recovery leaves the same repairs to
// the next Open.
//
// # What the scheduler and admin commands use
//
// Read (envelope, statuses, attributes, content split into header and
// body for postcat -h/-b), List and Walk (postqueue -p), Move, Defer
// (retry time), Hold and Release (postsuper -h/-H), Requeue, Remove
// (postsuper -d), MarkRecipients (per-recipient delivered, delayed or
// failed, with DSN code and reason), SetAttr (message flags such as a
// delay warning sent), and an injectable Clock (FakeClock for tests).
//
// # Administration
//
// control.go holds postsuper's operations (Queue.Admin and, with a running
// scheduler, Scheduler.Admin: delete, hold, release, requeue, expire of IDs or ALL,
// limited to named queues) and postqueue's triggers (Scheduler.FlushAll,
// FlushSite, DeliverNow). The Scheduler variants make the running scheduler
// act at once: a message deleted while active gets no new attempts and
// nothing its deliveries in flight report is recorded or notified; a held
// or requeued active message finishes the attempts in flight and stays
// where the admin put it; released and requeued messages are scheduled
// without waiting for queue_run_delay. Package queue/control serves these
// over a unix socket for the postkit commands.
//
// # The scheduler
//
// Scheduler (scheduler.go) is Postfix's qmgr over a Queue. It scans
// incoming when a Commit notifies it (OnCommit) and every queue_run_delay,
// and deferred every queue_run_delay for files whose time has come,
// serving the two alternately; held mail is never looked at. It moves up
// to qmgr_message_active_limit messages to active, asks a Router for each
// pending recipient's transport and next hop, and hands batches of at most
// transport_destination_recipient_limit recipients to a Deliverer (the
// delivery seam, delivery.go), which answers per recipient like LMTP.
// Each destination has a concurrency window (initial_destination_
// concurrency, growing by one per good delivery up to transport_
// destination_concurrency_limit, shrinking on site failures; a window of
// consecutive failures makes it dead for minimal_backoff_time and its
// other mail is deferred without an attempt), and destinations take turns
// (round robin) for the deliveries in flight, so a large one cannot
// starve the others. Every status is recorded with MarkRecipients as it
// arrives, so after a crash or a retry only the recipients still pending
// are tried. A pass ends with expiry (maximal_queue_lifetime,
// bounce_queue_lifetime for the null sender), the one delay warning
// (delay_warning_time), the notices handed to a Notifier (package bounce
// writes them), then Remove or Defer to now + clamp(age,
// minimal_backoff_time, maximal_backoff_time) (spec §7.4). It logs
// Postfix's maillog lines through slog.
package queue
