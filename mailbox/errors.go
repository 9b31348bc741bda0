package mailbox

import "errors"

// ErrTooLarge is returned (wrapped) when a delivery would make a Maildir
// file or an mbox file larger than the configured limit (Postfix's
// mailbox_size_limit, virtual_mailbox_limit, message_size_limit). Postfix
// reports it as "file too large"; agents map it to 5.2.2 (bounce).
var ErrTooLarge = errors.New("file too large")

// ErrLocked is returned (wrapped) when an mbox lock could not be obtained
// within the configured attempts. Agents defer the recipient with 4.2.0.
var ErrLocked = errors.New("unable to lock mailbox")

// ErrBadName is returned (wrapped) for a folder name that is empty, has an
// empty hierarchy level, or contains '/', a control character or a name
// that would leave the Maildir++ root.
var ErrBadName = errors.New("invalid mailbox name")

// ErrNoMessage is returned (wrapped) when a UID does not (or no longer)
// name a message of the Maildir.
var ErrNoMessage = errors.New("no such message")

// ErrNoFolder is returned (wrapped) when a folder does not exist.
var ErrNoFolder = errors.New("no such mailbox")

// ErrExists is returned (wrapped) when creating or renaming onto a folder
// that already exists.
var ErrExists = errors.New("mailbox already exists")

// ErrUnsafeFile is returned (wrapped) by DeliverMbox for an existing mbox
// file that has more than one name (a hard link to it elsewhere could make
// a delivery running as root write into a file the recipient does not
// own). Postfix's safe_open refuses such a file the same way ("file has 2
// hard links"); agents bounce with 5.2.0.
var ErrUnsafeFile = errors.New("unsafe mailbox file")
