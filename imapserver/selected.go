package imapserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/postkit-mail/postkit/mailbox"
)

// selected is the state of the selected mailbox: the Maildir shared
// with the other sessions that have it selected (box), and this
// session's view of it. view is the client's numbering: message
// sequence number i+1 is view[i]. It changes only when the session tells
// the client (EXISTS, EXPUNGE), so it may hold messages other sessions
// or processes already removed (gone) until an expunge may be reported.
type selected struct {
	name     string // store name
	box      *sharedBox
	md       *mailbox.Maildir // box.md; nil in IDLE (the box may hibernate)
	wake     chan struct{}    // the box signals a change
	gen      uint64           // box.gen this view was compared with
	readOnly bool
	view     []viewMsg
	maxUID   uint32   // highest UID the client has been told of
	saved    []uint32 // SEARCHRES result ($), as UIDs
	dirty    bool     // gone entries wait for an expunge report
	validity uint32

	mu     sync.Mutex // guards idling and closed (IDLE runs in its own goroutine)
	idling bool
	closed bool
}

// viewMsg is one message as the client knows it: 12 bytes, as an idle
// session holds one per message of its mailbox.
type viewMsg struct {
	uid    uint32
	kw     uint32        // keyword letters a-z (bit 0 = 'a') last reported
	flags  mailbox.Flags // flags last reported
	recent bool
	gone   bool
}

// reported records the flags of m as told to the client.
func (v *viewMsg) reported(m mailbox.Message) { v.flags, v.kw = m.Flags, kwLetters(m) }

// changed reports whether m's flags differ from what the client was told.
func (v *viewMsg) changed(m mailbox.Message) bool {
	return v.flags != m.Flags || v.kw != kwLetters(m)
}

// kwLetters is the set of keyword letters (Dovecot's a-z) in m's info.
func kwLetters(m mailbox.Message) uint32 {
	var k uint32
	for i := 0; i < len(m.Extra); i++ {
		if c := m.Extra[i]; c >= 'a' && c <= 'z' {
			k |= 1 << (c - 'a')
		}
	}
	return k
}

func (se *session) unselect() {
	if sel := se.sel; sel != nil {
		se.sel = nil
		se.unselectSel(sel)
	}
}

func (se *session) unselectSel(sel *selected) {
	sel.mu.Lock()
	sel.closed = true
	sel.box.detach(sel.wake, sel.idling)
	sel.idling = false
	sel.mu.Unlock()
	se.s.releaseBox(sel.box)
}

// Select is IMAP SELECT and EXAMINE.
func (se *session) Select(name string, opts *imap.SelectOptions) (*imap.SelectData, error) {
	n, err := storeName(name)
	if err != nil {
		se.unselect()
		return nil, err
	}
	// The new box is taken before the old one is let go: selecting the
	// same mailbox again keeps it open.
	box, err := se.s.openBox(se.ctx, se.store, n, opts.ReadOnly, se.uid, se.gid)
	se.unselect()
	if err != nil {
		return nil, se.mapErr(err)
	}
	sel := &selected{name: n, box: box, wake: make(chan struct{}, 1), readOnly: opts.ReadOnly}
	md, err := box.attach(sel.wake)
	if err != nil {
		se.s.releaseBox(box)
		return nil, se.mapErr(err)
	}
	sel.md = md
	// The box is current up to the events announced so far (the hub
	// has watched the Maildir since the box was opened), unless the hub
	// cannot watch: then read the directory.
	box.poll()
	if se.s.hub.WatchMethod() == "none" {
		if err := box.sync(false); err != nil {
			se.unselectSel(sel)
			return nil, se.mapErr(err)
		}
	}
	sel.gen = box.gen.Load()
	sel.drainWake()
	sel.validity = md.UIDValidity()
	msgs := md.Messages()
	sel.view = make([]viewMsg, 0, len(msgs))
	var firstUnseen, recent uint32
	for i, m := range msgs {
		v := viewMsg{uid: m.UID, recent: box.takeRecent(m, sel.validity)}
		v.reported(m)
		sel.view = append(sel.view, v)
		if v.recent {
			recent++
		}
		if firstUnseen == 0 && m.Flags&mailbox.FlagSeen == 0 {
			firstUnseen = uint32(i + 1)
		}
		sel.maxUID = m.UID
	}
	se.sel = sel
	kw, _ := md.Keywords()
	flags := []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}
	for _, k := range kw {
		flags = append(flags, imap.Flag(k))
	}
	perm := append([]imap.Flag(nil), flags...)
	if !opts.ReadOnly {
		perm = append(perm, imap.FlagWildcard)
	} else {
		perm = nil
	}
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(sel.view)),
		FirstUnseenSeqNum: firstUnseen,
		NumRecent:         recent,
		UIDNext:           imap.UID(md.UIDNext()),
		UIDValidity:       md.UIDValidity(),
	}, nil
}

// Unselect is IMAP UNSELECT and CLOSE (go-imap expunges for CLOSE first).
func (se *session) Unselect() error {
	se.unselect()
	return nil
}

func (sel *selected) drainWake() {
	select {
	case <-sel.wake:
	default:
	}
}

// pending reports whether the box changed since the view was compared
// with it, handling first the hub events waiting now.
func (sel *selected) pending() bool {
	sel.box.poll()
	sel.drainWake()
	return sel.box.gen.Load() != sel.gen
}

// Poll reports changes since the last command (go-imap calls it after
// each one): new messages, flag changes, and, when allowed, expunges.
func (se *session) Poll(w *goimapserver.UpdateWriter, allowExpunge bool) error {
	if se.sel == nil {
		return nil
	}
	if se.sel.pending() {
		if err := se.refresh(w); err != nil {
			return err
		}
	}
	if allowExpunge && se.sel.dirty {
		return se.reportExpunges(w)
	}
	return nil
}

// refresh compares the view with the box's messages (synced by the box)
// and tells the client about flag changes and new messages; messages
// gone are marked for reportExpunges.
func (se *session) refresh(w *goimapserver.UpdateWriter) error {
	sel := se.sel
	sel.gen = sel.box.gen.Load()
	md, err := sel.box.current()
	if err != nil {
		return se.mapErr(err)
	}
	if v := md.UIDValidity(); v != sel.validity {
		// The uidlist was lost and renumbered: the client's UIDs mean
		// nothing any more (RFC 3501 2.3.1.1), as Dovecot ends it.
		se.conn.Bye("Mailbox UIDVALIDITY changed")
		return errValidity
	}
	cur := md.Messages()
	// Both lists ascend by UID: walk them together.
	j := 0
	for i := range sel.view {
		v := &sel.view[i]
		if v.gone {
			continue
		}
		for j < len(cur) && cur[j].UID < v.uid {
			j++
		}
		if j == len(cur) || cur[j].UID != v.uid {
			v.gone = true
			sel.dirty = true
			continue
		}
		m := cur[j]
		if v.changed(m) {
			v.reported(m)
			if err := w.WriteMessageFlags(uint32(i+1), 0, imapFlags(m, v.recent)); err != nil {
				return err
			}
		}
	}
	added := false
	for _, m := range cur {
		if m.UID > sel.maxUID {
			nv := viewMsg{uid: m.UID, recent: sel.box.takeRecent(m, sel.validity)}
			nv.reported(m)
			sel.view = append(sel.view, nv)
			sel.maxUID = m.UID
			added = true
		}
	}
	if added {
		return w.WriteNumMessages(uint32(len(sel.view)))
	}
	return nil
}

func (se *session) reportExpunges(w *goimapserver.UpdateWriter) error {
	sel := se.sel
	for i := len(sel.view) - 1; i >= 0; i-- {
		if sel.view[i].gone {
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
			sel.view = append(sel.view[:i], sel.view[i+1:]...)
		}
	}
	sel.dirty = false
	return nil
}

// Idle is IMAP IDLE: every hub event (a delivery by mda, a change by
// another session or process) is reported at once. While idling the
// session holds no Maildir, so the box hibernates when all its sessions
// idle.
func (se *session) Idle(w *goimapserver.UpdateWriter, stop <-chan struct{}) error {
	sel := se.sel
	if sel == nil {
		<-stop
		return nil
	}
	if err := se.Poll(w, true); err != nil {
		return err
	}
	sel.mu.Lock()
	if sel.closed {
		sel.mu.Unlock()
		return nil
	}
	sel.idling, sel.md = true, nil
	sel.box.enterIdle()
	sel.mu.Unlock()
	defer func() {
		sel.mu.Lock()
		defer sel.mu.Unlock()
		if sel.closed || !sel.idling {
			return
		}
		sel.idling = false
		md, err := sel.box.leaveIdle()
		if err != nil {
			se.conn.Bye("Mailbox can't be opened any more")
			return
		}
		sel.md = md
	}()
	for {
		select {
		case <-stop:
			return nil
		case <-sel.wake:
			if sel.box.gen.Load() == sel.gen {
				continue
			}
			if err := se.refresh(w); err != nil {
				return err
			}
			if sel.dirty {
				if err := se.reportExpunges(w); err != nil {
					return err
				}
			}
		}
	}
}

// resolve turns a sequence or UID set into view indexes, ascending.
// Gone messages are included (the caller decides).
func (sel *selected) resolve(numSet imap.NumSet) []int {
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(sel.view))
		if n == 0 {
			return nil
		}
		for _, r := range set {
			a, b := r.Start, r.Stop
			if a == 0 {
				a = n
			}
			if b == 0 {
				b = n
			}
			if a > b {
				a, b = b, a
			}
			for k := a; k <= b && k <= n; k++ {
				out = append(out, int(k-1))
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			set = imap.UIDSet{}
			for _, u := range sel.saved {
				set = append(set, imap.UIDRange{Start: imap.UID(u), Stop: imap.UID(u)})
			}
		}
		if len(sel.view) == 0 {
			return nil
		}
		max := sel.view[len(sel.view)-1].uid
		for _, r := range set {
			a, b := uint32(r.Start), uint32(r.Stop)
			if a == 0 {
				a = max
			}
			if b == 0 {
				b = max
			}
			if a > b {
				a, b = b, a
			}
			lo := sort.Search(len(sel.view), func(i int) bool { return sel.view[i].uid >= a })
			for i := lo; i < len(sel.view) && sel.view[i].uid <= b; i++ {
				out = append(out, i)
			}
		}
	}
	sort.Ints(out)
	// dedupe
	k := 0
	for i, x := range out {
		if i == 0 || x != out[k-1] {
			out[k] = x
			k++
		}
	}
	return out[:k]
}

func isUIDSet(numSet imap.NumSet) bool {
	_, ok := numSet.(imap.UIDSet)
	return ok
}

func expungeIssued() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeExpungeIssued, Text: "Some of the requested messages no longer exist"}
}

func readOnlyErr() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is read-only"}
}

// Expunge is IMAP EXPUNGE, UID EXPUNGE (uids set) and CLOSE's expunge.
func (se *session) Expunge(w *goimapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := se.sel
	if sel.readOnly {
		return readOnlyErr()
	}
	if err := sel.box.sync(false); err != nil {
		return se.mapErr(err)
	}
	var del []uint32
	var idx []int
	for i, v := range sel.view {
		if v.gone || (uids != nil && !uids.Contains(imap.UID(v.uid))) {
			continue
		}
		m, ok := sel.md.Message(v.uid)
		if ok && m.Flags&mailbox.FlagTrashed != 0 {
			del = append(del, v.uid)
			idx = append(idx, i)
		}
	}
	if len(del) > 0 {
		if err := sel.md.Expunge(se.ctx, del...); err != nil {
			return se.mapErr(err)
		}
	}
	if w == nil {
		return nil
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		sel.view = append(sel.view[:i], sel.view[i+1:]...)
	}
	return nil
}

// Store is IMAP STORE and UID STORE.
func (se *session) Store(w *goimapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	sel := se.sel
	if sel.readOnly {
		return readOnlyErr()
	}
	bits, kw := splitFlags(flags.Flags)
	missing := false
	for _, i := range sel.resolve(numSet) {
		v := &sel.view[i]
		m, ok := sel.md.Message(v.uid)
		if v.gone || !ok {
			missing = true
			continue
		}
		newBits, newKW := m.Flags, m.Keywords
		switch flags.Op {
		case imap.StoreFlagsSet:
			newBits = bits | (m.Flags & mailbox.FlagPassed)
			newKW = kw
		case imap.StoreFlagsAdd:
			newBits = m.Flags | bits
			newKW = append([]string(nil), m.Keywords...)
			for _, k := range kw {
				if !hasKeyword(newKW, k) {
					newKW = append(newKW, k)
				}
			}
		case imap.StoreFlagsDel:
			newBits = m.Flags &^ bits
			newKW = nil
			for _, k := range m.Keywords {
				if !hasKeyword(kw, k) {
					newKW = append(newKW, k)
				}
			}
		}
		var err error
		if newBits != m.Flags {
			if m, err = sel.md.SetFlags(se.ctx, v.uid, newBits); err != nil {
				if isGone(err) {
					missing = true
					continue
				}
				return se.mapErr(err)
			}
		}
		if !sameKeywords(newKW, m.Keywords) {
			if m, err = sel.md.SetKeywords(se.ctx, v.uid, newKW); err != nil {
				if isGone(err) {
					missing = true
					continue
				}
				return se.mapErr(err)
			}
		}
		v.reported(m)
		if !flags.Silent {
			rw := w.CreateMessage(uint32(i + 1))
			if isUIDSet(numSet) {
				rw.WriteUID(imap.UID(v.uid))
			}
			rw.WriteFlags(imapFlags(m, v.recent))
			if err := rw.Close(); err != nil {
				return err
			}
		}
	}
	if missing {
		return expungeIssued()
	}
	return nil
}

func isGone(err error) bool {
	return errors.Is(err, mailbox.ErrNoMessage) || errors.Is(err, os.ErrNotExist)
}

func sameKeywords(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, k := range a {
		if !hasKeyword(b, k) {
			return false
		}
	}
	return true
}

// openDest opens the target of COPY or MOVE (TRYCREATE when missing).
func (se *session) openDest(dest string) (*mailbox.Maildir, error) {
	n, err := storeName(dest)
	if err != nil {
		return nil, err
	}
	if se.sel.name == n && !se.sel.readOnly {
		return se.sel.md, nil
	}
	md, err := se.store.OpenFolder(se.ctx, n, false)
	if err != nil {
		if e := se.mapErr(err); isNonExistent(e) {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "Mailbox doesn't exist"}
		}
		return nil, se.mapErr(err)
	}
	return md, nil
}

// Copy is IMAP COPY and UID COPY (COPYUID for UIDPLUS).
func (se *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sel := se.sel
	dst, err := se.openDest(dest)
	if err != nil {
		return nil, err
	}
	data := &imap.CopyData{UIDValidity: dst.UIDValidity()}
	for _, i := range sel.resolve(numSet) {
		v := sel.view[i]
		if v.gone {
			return nil, expungeIssued()
		}
		m, err := sel.md.Copy(se.ctx, v.uid, dst)
		if err != nil {
			return nil, se.mapErr(err)
		}
		data.SourceUIDs.AddNum(imap.UID(v.uid))
		data.DestUIDs.AddNum(imap.UID(m.UID))
	}
	if n, _ := storeName(dest); n == sel.name {
		sel.box.sync(true) // copied into itself: EXISTS at once
	}
	return data, nil
}

// Move is IMAP MOVE and UID MOVE (RFC 6851).
func (se *session) Move(w *goimapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel := se.sel
	if sel.readOnly {
		return readOnlyErr()
	}
	dst, err := se.openDest(dest)
	if err != nil {
		return err
	}
	if dst == sel.md {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Can't move to the same mailbox"}
	}
	data := &imap.CopyData{UIDValidity: dst.UIDValidity()}
	var moved []int
	var firstErr error
	for _, i := range sel.resolve(numSet) {
		v := sel.view[i]
		if v.gone {
			firstErr = expungeIssued()
			continue
		}
		m, err := sel.md.Move(se.ctx, v.uid, dst)
		if err != nil {
			firstErr = se.mapErr(err)
			break
		}
		data.SourceUIDs.AddNum(imap.UID(v.uid))
		data.DestUIDs.AddNum(imap.UID(m.UID))
		moved = append(moved, i)
	}
	if len(moved) > 0 {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
		for k := len(moved) - 1; k >= 0; k-- {
			i := moved[k]
			if err := w.WriteExpunge(uint32(i + 1)); err != nil {
				return err
			}
			sel.view = append(sel.view[:i], sel.view[i+1:]...)
		}
	}
	return firstErr
}

// Fetch is IMAP FETCH and UID FETCH.
func (se *session) Fetch(w *goimapserver.FetchWriter, numSet imap.NumSet, opts *imap.FetchOptions) error {
	sel := se.sel
	markSeen := false
	for _, bs := range opts.BodySection {
		if !bs.Peek {
			markSeen = true
		}
	}
	for _, bs := range opts.BinarySection {
		if !bs.Peek {
			markSeen = true
		}
	}
	missing := false
	for _, i := range sel.resolve(numSet) {
		v := &sel.view[i]
		m, ok := sel.md.Message(v.uid)
		if v.gone || !ok {
			missing = true
			continue
		}
		if err := se.fetchOne(w, uint32(i+1), v, m, opts, markSeen); err != nil {
			if err == errGone {
				missing = true
				continue
			}
			return err
		}
	}
	if missing {
		return expungeIssued()
	}
	return nil
}

var errValidity = errors.New("imapserver: UIDVALIDITY changed under a selected mailbox")

var errGone = &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeExpungeIssued, Text: "gone"}

func (se *session) fetchOne(w *goimapserver.FetchWriter, seq uint32, v *viewMsg, m mailbox.Message, opts *imap.FetchOptions, markSeen bool) error {
	sel := se.sel
	needBody := opts.BodyStructure != nil || len(opts.BodySection) > 0 || len(opts.BinarySection) > 0 || len(opts.BinarySectionSize) > 0
	var raw []byte
	if needBody {
		b, err := se.s.readMessage(se.ctx, sel.md, m)
		if err != nil {
			if isGone(err) {
				return errGone
			}
			return se.mapErr(err)
		}
		raw = b
	}
	flagsChanged := false
	if markSeen && !sel.readOnly && m.Flags&mailbox.FlagSeen == 0 {
		nm, err := sel.md.SetFlags(se.ctx, m.UID, m.Flags|mailbox.FlagSeen)
		if err == nil {
			m = nm
			v.reported(m)
			flagsChanged = true
		}
	}
	rw := w.CreateMessage(seq)
	if opts.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if opts.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m, v.recent))
	}
	if opts.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if opts.RFC822Size {
		var size int64
		if raw != nil {
			size = int64(len(raw))
		} else {
			var err error
			if size, err = se.s.messageSize(se.ctx, sel.md, m); err != nil {
				rw.Close()
				if isGone(err) {
					return errGone
				}
				return se.mapErr(err)
			}
		}
		rw.WriteRFC822Size(size)
	}
	if opts.Envelope {
		var env *imap.Envelope
		if raw != nil {
			env = parseMIME(raw, 0, len(raw), false, maxMIMEDepth).envelope()
		} else {
			var err error
			if env, err = se.s.envelope(se.ctx, sel.md, m); err != nil {
				rw.Close()
				if isGone(err) {
					return errGone
				}
				return se.mapErr(err)
			}
		}
		rw.WriteEnvelope(env)
	}
	var tree *mimePart
	if raw != nil && (opts.BodyStructure != nil || len(opts.BodySection) > 0) {
		tree = parseMIME(raw, 0, len(raw), false, 0)
	}
	if opts.BodyStructure != nil {
		rw.WriteBodyStructure(tree.bodyStructure())
	}
	for _, bs := range opts.BodySection {
		b := partial(tree.section(bs), bs.Partial)
		wc := rw.WriteBodySection(bs, int64(len(b)))
		_, werr := wc.Write(b)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			rw.Close()
			return werr
		}
	}
	for _, bs := range opts.BinarySection {
		b := goimapserver.ExtractBinarySection(bytes.NewReader(raw), bs)
		wc := rw.WriteBinarySection(bs, int64(len(b)))
		_, werr := wc.Write(b)
		if cerr := wc.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			rw.Close()
			return werr
		}
	}
	for _, bs := range opts.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, goimapserver.ExtractBinarySectionSize(bytes.NewReader(raw), bs))
	}
	return rw.Close()
}

func cacheKey(md *mailbox.Maildir, m mailbox.Message) string {
	return md.Path() + "\x00" + m.Key
}

// readMessage returns the message with CRLF line ends, and caches its size.
func (s *Server) readMessage(ctx context.Context, md *mailbox.Maildir, m mailbox.Message) ([]byte, error) {
	f, _, err := md.Open(ctx, m.UID)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	b = toCRLF(b)
	s.cache.put(cacheKey(md, m), func(ci *cachedInfo) { ci.size = int64(len(b)) })
	return b, nil
}

// messageSize is RFC822.SIZE: the size with CRLF line ends.
func (s *Server) messageSize(ctx context.Context, md *mailbox.Maildir, m mailbox.Message) (int64, error) {
	if n, ok := mailbox.KeyVSize(m.Key); ok {
		return n, nil
	}
	k := cacheKey(md, m)
	if ci, ok := s.cache.get(k); ok && ci.size >= 0 {
		return ci.size, nil
	}
	f, _, err := md.Open(ctx, m.UID)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := mailbox.CRLFSize(f)
	if err != nil {
		return 0, err
	}
	s.cache.put(k, func(ci *cachedInfo) { ci.size = n })
	return n, nil
}

func (s *Server) envelope(ctx context.Context, md *mailbox.Maildir, m mailbox.Message) (*imap.Envelope, error) {
	k := cacheKey(md, m)
	if ci, ok := s.cache.get(k); ok && ci.envelope != nil {
		return ci.envelope, nil
	}
	f, _, err := md.Open(ctx, m.UID)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := readEnvelope(f)
	s.cache.put(k, func(ci *cachedInfo) { ci.envelope = env })
	return env, nil
}
