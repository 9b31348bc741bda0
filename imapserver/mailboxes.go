package imapserver

import (
	"io"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/postkit-mail/postkit/mailbox"
)

// Create is IMAP CREATE. A trailing separator ("foo.") only says that
// the name will have children (RFC 3501 6.3.3).
func (se *session) Create(name string, _ *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, string(mailbox.Separator))
	n, err := storeName(name)
	if err != nil {
		return err
	}
	if n == mailbox.Inbox {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	}
	return se.mapErr(se.store.CreateFolder(n))
}

// Delete is IMAP DELETE.
func (se *session) Delete(name string) error {
	n, err := storeName(name)
	if err != nil {
		return err
	}
	if n == mailbox.Inbox {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "INBOX can't be deleted."}
	}
	if se.sel != nil && se.sel.name == n {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Can't delete the selected mailbox"}
	}
	return se.mapErr(se.store.DeleteFolder(n))
}

// Rename is IMAP RENAME (renaming INBOX moves its messages).
func (se *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	o, err := storeName(oldName)
	if err != nil {
		return err
	}
	n, err := storeName(strings.TrimSuffix(newName, string(mailbox.Separator)))
	if err != nil {
		return err
	}
	if n == mailbox.Inbox {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	}
	return se.mapErr(se.store.RenameFolder(se.ctx, o, n))
}

// Subscribe is IMAP SUBSCRIBE (the mailbox need not exist).
func (se *session) Subscribe(name string) error {
	n, err := storeName(name)
	if err != nil {
		return err
	}
	return se.mapErr(se.store.Subscribe(n))
}

// Unsubscribe is IMAP UNSUBSCRIBE.
func (se *session) Unsubscribe(name string) error {
	n, err := storeName(name)
	if err != nil {
		return err
	}
	return se.mapErr(se.store.Unsubscribe(n))
}

var specialUse = func() map[string]imap.MailboxAttr {
	m := map[string]imap.MailboxAttr{}
	for _, f := range mailbox.SpecialFolders {
		m[f.Name] = imap.MailboxAttr(f.Attr)
	}
	return m
}()

// List is IMAP LIST and LSUB (SelectSubscribed), with LIST-EXTENDED's
// selection and return options, CHILDREN and SPECIAL-USE attributes.
func (se *session) List(w *goimapserver.ListWriter, ref string, patterns []string, opts *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailbox.Separator})
	}
	folders, err := se.store.Folders()
	if err != nil {
		return se.mapErr(err)
	}
	subs, err := se.store.Subscriptions()
	if err != nil {
		return se.mapErr(err)
	}
	exists := map[string]bool{}
	var names []string
	for _, f := range folders {
		c := clientName(f)
		exists[c] = true
		names = append(names, c)
	}
	subscribed := map[string]bool{}
	for _, sub := range subs {
		c := clientName(sub)
		if strings.EqualFold(c, "INBOX") {
			c = "INBOX"
		}
		subscribed[c] = true
	}
	// Maildir++ levels without a folder of their own ("a" for "a.b").
	parents := map[string]bool{}
	for _, c := range names {
		for i := len(c) - 1; i > 0; i-- {
			if c[i] == mailbox.Separator {
				parents[c[:i]] = true
			}
		}
	}
	var all []string
	seen := map[string]bool{}
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			all = append(all, c)
		}
	}
	if opts.SelectSubscribed {
		for c := range subscribed {
			add(c)
		}
	} else {
		for _, c := range names {
			add(c)
		}
		for p := range parents {
			add(p)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i] == "INBOX" || all[j] == "INBOX" {
			return all[i] == "INBOX" && all[j] != "INBOX"
		}
		return all[i] < all[j]
	})
	for _, c := range all {
		matched := false
		for _, p := range patterns {
			if goimapserver.MatchList(c, mailbox.Separator, ref, p) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		var attrs []imap.MailboxAttr
		if !exists[c] {
			if opts.SelectSubscribed || !parents[c] {
				attrs = append(attrs, imap.MailboxAttrNonExistent)
			} else {
				attrs = append(attrs, imap.MailboxAttrNoSelect)
			}
		}
		if parents[c] {
			attrs = append(attrs, imap.MailboxAttrHasChildren)
		} else {
			attrs = append(attrs, imap.MailboxAttrHasNoChildren)
		}
		if subscribed[c] && (opts.ReturnSubscribed || opts.SelectSubscribed) {
			attrs = append(attrs, imap.MailboxAttrSubscribed)
		}
		su, isSpecial := specialUse[c]
		if isSpecial && exists[c] {
			attrs = append(attrs, su)
		}
		if opts.SelectSpecialUse && !(isSpecial && exists[c]) {
			continue
		}
		data := &imap.ListData{Attrs: attrs, Delim: mailbox.Separator, Mailbox: c}
		if opts.ReturnStatus != nil && exists[c] {
			st, err := se.Status(c, opts.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// Status is IMAP STATUS.
func (se *session) Status(name string, opts *imap.StatusOptions) (*imap.StatusData, error) {
	n, err := storeName(name)
	if err != nil {
		return nil, err
	}
	var md *mailbox.Maildir
	if se.sel != nil && se.sel.name == n {
		md = se.sel.md
		if err := se.sel.box.sync(false); err != nil {
			return nil, se.mapErr(err)
		}
	} else {
		md, err = se.store.OpenFolder(se.ctx, n, true)
		if err != nil {
			return nil, se.mapErr(err)
		}
	}
	msgs := md.Messages()
	data := &imap.StatusData{Mailbox: name}
	var num, recent, unseen, deleted uint32
	var size int64
	for _, m := range msgs {
		num++
		if strings.HasPrefix(m.Name, "new/") || m.Recent {
			recent++
		}
		if m.Flags&mailbox.FlagSeen == 0 {
			unseen++
		}
		if m.Flags&mailbox.FlagTrashed != 0 {
			deleted++
		}
		if opts.Size {
			sz, err := se.s.messageSize(se.ctx, md, m)
			if err != nil {
				return nil, se.mapErr(err)
			}
			size += sz
		}
	}
	if opts.NumMessages {
		data.NumMessages = &num
	}
	if opts.NumRecent {
		data.NumRecent = &recent
	}
	if opts.NumUnseen {
		data.NumUnseen = &unseen
	}
	if opts.NumDeleted {
		data.NumDeleted = &deleted
	}
	if opts.Size {
		data.Size = &size
	}
	if opts.UIDNext {
		data.UIDNext = imap.UID(md.UIDNext())
	}
	if opts.UIDValidity {
		data.UIDValidity = md.UIDValidity()
	}
	if opts.AppendLimit {
		l := se.s.opts.AppendLimit
		data.AppendLimit = &l
	}
	return data, nil
}

// Append is IMAP APPEND: the literal is stored with LF line ends.
func (se *session) Append(name string, r imap.LiteralReader, opts *imap.AppendOptions) (*imap.AppendData, error) {
	n, err := storeName(name)
	if err != nil {
		// still read the literal, go-imap needs it consumed
		io.Copy(io.Discard, r)
		return nil, err
	}
	var md *mailbox.Maildir
	if se.sel != nil && se.sel.name == n && !se.sel.readOnly {
		md = se.sel.md
	} else {
		md, err = se.store.OpenFolder(se.ctx, n, false)
		if err != nil {
			io.Copy(io.Discard, r)
			if e := se.mapErr(err); isNonExistent(e) {
				return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "Mailbox doesn't exist"}
			}
			return nil, se.mapErr(err)
		}
	}
	bits, kw := splitFlags(opts.Flags)
	pr, pw := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		lw := &lfWriter{w: pw}
		_, err := io.Copy(lw, r)
		if err == nil {
			err = lw.flush()
		}
		pw.CloseWithError(err)
	}()
	msg, err := md.Append(se.ctx, pr, bits, opts.Time)
	pr.CloseWithError(io.ErrClosedPipe)
	<-copied
	if err != nil {
		io.Copy(io.Discard, r) // go-imap needs the literal consumed
		return nil, se.mapErr(err)
	}
	if len(kw) > 0 {
		if _, err := md.SetKeywords(se.ctx, msg.UID, kw); err != nil {
			return nil, se.mapErr(err)
		}
	}
	if se.sel != nil && se.sel.name == n {
		// The selected mailbox grew: this session's next update shows it.
		se.sel.box.sync(true)
	}
	return &imap.AppendData{UID: imap.UID(msg.UID), UIDValidity: md.UIDValidity()}, nil
}

func isNonExistent(err error) bool {
	ie, ok := err.(*imap.Error)
	return ok && ie.Code == imap.ResponseCodeNonExistent
}
