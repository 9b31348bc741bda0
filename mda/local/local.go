package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/postkit-mail/postkit/address"
	"github.com/postkit-mail/postkit/auth"
	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
	"github.com/postkit-mail/postkit/mda"
	"github.com/postkit-mail/postkit/queue"
)

// Options are what FromConfig needs besides main.cf.
type Options struct {
	// Users is the local user database; nil means SystemUsers()
	// (/etc/passwd).
	Users auth.UserDB
	// Resubmit queues forwarded copies (aliases and .forward entries that
	// name non-local addresses, :include: lists, owner- lists). Nil makes
	// such deliveries defer with 4.3.0.
	Resubmit mda.Resubmitter
	// Logger receives the agent's own lines (warnings, expansions); nil
	// means slog.Default().
	Logger *slog.Logger
	// Hostname is used in Maildir file names; "" means os.Hostname().
	Hostname string
	// Registry opens alias_maps and mailbox_command_maps; nil means
	// maps.Default().
	Registry *maps.Registry
}

// Expansion sources, for allow_mail_to_commands and allow_mail_to_files.
const (
	expAlias = 1 << iota
	expForward
	expInclude
)

// prepend_delivered_header bits.
const (
	hdrCommand = 1 << iota
	hdrFile
	hdrForward
)

// params are the main.cf settings the agent uses.
type params struct {
	delims           string
	split            address.SplitOptions
	ownerSpecial     bool
	expandOwnerAlias bool
	allowCmd         int
	allowFile        int
	forwardPath      []string
	fwdFilter        string
	cmdFilter        string
	luserRelay       string
	mailboxCommand   string
	homeMailbox      string
	spoolDir         string
	sizeLimit        int64
	locks            []string
	lockAttempts     int
	lockDelay        time.Duration
	staleLock        time.Duration
	hdrMask          int
	origRcpt         bool
	commandTimeLimit time.Duration
	commandDir       string
	exportEnv        []string
	commandShell     string
	defaultPrivs     string
	myorigin         string
	frozenDelivered  bool
	strictOwnership  bool
	extProp          int // propagate_unmatched_extensions: expAlias|expForward|expInclude
}

// Agent is Postfix's local(8) delivery agent: a queue.Deliverer for the
// "local" transport. It is safe for concurrent use.
type Agent struct {
	p            params
	aliases      maps.List
	aliasOwner   []int // uid owning each alias table; 0 also for non-file tables
	commandMaps  maps.List
	users        auth.UserDB
	sys          passwdDB
	resub        mda.Resubmitter
	log          *slog.Logger
	hostname     string
	root         bool
	self         identity
	localDomains *maps.MatchList
	myhostname   string
	closers      []maps.Map
}

// identity is whose rights a delivery uses.
type identity struct {
	uid, gid          int
	name, home, shell string
}

// FromConfig builds the agent from main.cf (spec §8.1). It opens
// alias_maps (in aliases(5) format, as postalias reads it) and
// mailbox_command_maps. mailbox_transport(_maps) and
// fallback_transport(_maps) hand recipients to other transports, which
// postkit's local agent does not do: a non-empty value is an error.
func FromConfig(ctx context.Context, cfg *config.Config, opts Options) (*Agent, error) {
	r := config.NewReader(cfg)
	raw := func(name string) string {
		v, _ := cfg.Raw(name)
		return v
	}
	a := &Agent{
		users: opts.Users,
		sys:   passwdDB{path: passwdFile},
		resub: opts.Resubmit,
		log:   opts.Logger,
		root:  os.Geteuid() == 0,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.users == nil {
		a.users = a.sys
	}
	a.hostname = opts.Hostname
	if a.hostname == "" {
		a.hostname, _ = os.Hostname()
	}
	p := &a.p
	p.delims = r.Str("recipient_delimiter")
	p.ownerSpecial = r.Bool("owner_request_special")
	p.split = address.SplitOptions{NoOwnerRequestSpecial: !p.ownerSpecial, DoubleBounceSender: r.Str("double_bounce_sender")}
	p.expandOwnerAlias = r.Bool("expand_owner_alias")
	var err error
	if p.allowCmd, err = sourceMask("allow_mail_to_commands", r.List("allow_mail_to_commands")); err != nil {
		return nil, err
	}
	if p.allowFile, err = sourceMask("allow_mail_to_files", r.List("allow_mail_to_files")); err != nil {
		return nil, err
	}
	p.forwardPath = strings.FieldsFunc(raw("forward_path"), func(c rune) bool { return strings.ContainsRune(", \t\r\n", c) })
	p.fwdFilter = r.Str("forward_expansion_filter")
	p.cmdFilter = r.Str("command_expansion_filter")
	p.luserRelay = strings.TrimSpace(raw("luser_relay"))
	p.mailboxCommand = strings.TrimSpace(raw("mailbox_command"))
	p.homeMailbox = r.Str("home_mailbox")
	p.spoolDir = r.Str("mail_spool_directory")
	p.sizeLimit = r.Size("mailbox_size_limit")
	p.locks = r.List("mailbox_delivery_lock")
	p.lockAttempts = r.Int("deliver_lock_attempts")
	p.lockDelay = r.Duration("deliver_lock_delay")
	p.staleLock = r.Duration("stale_lock_time")
	for _, l := range p.locks {
		if l != "fcntl" && l != "flock" && l != "dotlock" {
			return nil, fmt.Errorf("local: mailbox_delivery_lock: unknown lock method %q", l)
		}
	}
	for _, h := range r.List("prepend_delivered_header") {
		switch strings.ToLower(h) {
		case "command":
			p.hdrMask |= hdrCommand
		case "file":
			p.hdrMask |= hdrFile
		case "forward":
			p.hdrMask |= hdrForward
		default:
			return nil, fmt.Errorf("local: prepend_delivered_header: unknown value %q", h)
		}
	}
	p.origRcpt = r.Bool("enable_original_recipient")
	p.commandTimeLimit = r.Duration("command_time_limit")
	p.commandDir = strings.TrimSpace(raw("command_execution_directory"))
	p.exportEnv = r.List("export_environment")
	p.commandShell = r.Str("local_command_shell")
	p.defaultPrivs = r.Str("default_privs")
	p.myorigin = r.Str("myorigin")
	a.myhostname = r.Str("myhostname")
	p.frozenDelivered = r.Bool("frozen_delivered_to")
	p.strictOwnership = r.Bool("strict_mailbox_ownership")
	for _, v := range r.List("propagate_unmatched_extensions") {
		switch strings.ToLower(v) {
		case "alias":
			p.extProp |= expAlias
		case "forward":
			p.extProp |= expForward
		case "include":
			p.extProp |= expInclude
		case "canonical", "virtual", "generic":
			// cleanup's and smtp's business
		default:
			return nil, fmt.Errorf("local: propagate_unmatched_extensions: unknown value %q", v)
		}
	}
	for _, name := range []string{"mailbox_transport", "mailbox_transport_maps", "fallback_transport", "fallback_transport_maps"} {
		if v := r.Str(name); v != "" {
			return nil, fmt.Errorf("local: %s = %s: handing recipients to another transport is not supported", name, v)
		}
	}
	dests := r.List("mydestination")
	msgLimit := r.Size("message_size_limit")
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if p.sizeLimit > 0 && msgLimit > 0 && p.sizeLimit < msgLimit {
		// Postfix's local(8) refuses to start with this.
		return nil, errors.New("local: mailbox_size_limit is smaller than message_size_limit")
	}
	if p.commandTimeLimit <= 0 {
		p.commandTimeLimit = 1000 * time.Second
	}
	reg := opts.Registry
	if reg == nil {
		reg = maps.Default()
	}
	mopts := maps.Options{Aliases: true, NoSubstitution: true, Logger: a.log}
	for _, spec := range cfg.List("alias_maps") {
		typ, name, err := maps.SplitSpec(spec)
		if err != nil {
			return nil, fmt.Errorf("local: alias_maps: %w", err)
		}
		if typ == "nis" {
			// Postfix finds nothing in NIS on a host without an NIS
			// domain; postkit has no nis type and does the same.
			continue
		}
		m, err := reg.Open(ctx, spec, mopts)
		if err != nil {
			// Postfix's local(8) cannot open the table either and defers
			// the mail ("alias database unavailable") until it can: a
			// missing /etc/aliases must not stop the server.
			a.log.Warn(fmt.Sprintf("alias_maps: cannot open %s: %v", spec, err))
			openErr := &maps.Error{Map: spec, Temporary: true, Err: err}
			m = maps.FuncMap(func(context.Context, string) (string, bool, error) { return "", false, openErr })
		}
		a.closers = append(a.closers, m)
		a.aliases = append(a.aliases, m)
		a.aliasOwner = append(a.aliasOwner, tableOwner(typ, name))
	}
	for _, spec := range cfg.List("mailbox_command_maps") {
		m, err := reg.Open(ctx, spec, maps.Options{NoSubstitution: true, Logger: a.log})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("local: mailbox_command_maps: %w", err)
		}
		a.closers = append(a.closers, m)
		a.commandMaps = append(a.commandMaps, m)
	}
	if a.localDomains, err = maps.NewMatchList(ctx, maps.MatchListConfig{
		Name: "mydestination", Kind: maps.DomainMatch, ParentStyle: r.ParentStyle("mydestination"), Registry: reg,
	}, dests); err != nil {
		a.Close()
		return nil, fmt.Errorf("local: %w", err)
	}
	a.self = identity{uid: os.Getuid(), gid: os.Getgid()}
	if u, ok, _ := a.sys.byUID(a.self.uid); ok {
		a.self.name, a.self.home, a.self.shell = u.Name, u.Home, u.Extra["shell"]
	}
	return a, nil
}

// Close releases the tables the agent opened.
func (a *Agent) Close() error {
	var first error
	for _, m := range a.closers {
		if err := maps.Close(m); err != nil && first == nil {
			first = err
		}
	}
	a.closers = nil
	return first
}

func sourceMask(param string, items []string) (int, error) {
	m := 0
	for _, it := range items {
		switch strings.ToLower(it) {
		case "alias":
			m |= expAlias
		case "forward":
			m |= expForward
		case "include":
			m |= expInclude
		default:
			return 0, fmt.Errorf("local: %s: unknown value %q", param, it)
		}
	}
	return m, nil
}

// tableOwner returns the uid that owns a file-based table's source (the
// rights |command and /file entries of that table run with). Tables that
// are not files count as root's.
func tableOwner(typ, name string) int {
	switch typ {
	case "hash", "btree", "lmdb", "dbm", "cdb", "texthash", "regexp", "pcre", "cidr":
		var st syscall.Stat_t
		if syscall.Stat(name, &st) == nil {
			return int(st.Uid)
		}
	}
	return 0
}

// leaf is the outcome of one final delivery (mailbox, file, command,
// forward) made for a queue recipient.
type leaf struct {
	outcome queue.Outcome
	dsn     string
	reason  string
	addr    string  // the address being delivered when it happened
	fwd     *fwdKey // a forwarded copy waiting for flushForwards
}

// attr is the per-recursion state Postfix keeps in LOCAL_STATE and
// USER_ATTR; it is passed by value so that a nested expansion does not
// change its caller's view.
type attr struct {
	level     int
	rcpt      string // current address, internal form
	orig      string // original recipient (X-Original-To); "" when reset
	delivered string // Delivered-To value
	sender    string
	owner     string // owner- alias in force, or the .forward user
	expFrom   string
	expType   int
	notify    []string
	orcpt     string
	envid     string
	ret       string

	local, user, ext, domain string
	delim                    string
	// unmatched is the extension re-applied to the addresses of an
	// expansion (propagate_unmatched_extensions), "" for none.
	unmatched string
	rights    *identity // nil: default rights
}

// fwdKey groups forwarded recipients into one new message per Delivered-To
// value and envelope sender, as Postfix's forward(3) does.
type fwdKey struct{ delivered, sender, envid, ret string }

// run is one Deliver call.
type run struct {
	a        *Agent
	d        *queue.Delivery
	loop     map[string]bool
	seen     map[string]bool
	done     map[string][]leaf // per-request duplicates: the first result
	leaves   []leaf
	fwd      map[fwdKey][]cleanup.Recipient
	fwdOrder []fwdKey
	topAddr  string // the queue recipient being delivered
}

// Deliver delivers one message to its local recipients and returns one
// result per recipient (queue.Deliverer).
func (a *Agent) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	res := make([]queue.Result, len(d.Recipients))
	x := &run{a: a, d: d, loop: map[string]bool{}, done: map[string][]leaf{}}
	rc, err := d.Open()
	if err == nil {
		var vals []string
		vals, err = mda.DeliveredTo(rc)
		rc.Close()
		for _, v := range vals {
			x.loop[v] = true
		}
	}
	for i, r := range d.Recipients {
		if err != nil {
			res[i] = queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Relay: "local", Reason: "cannot read message: " + err.Error()}
			continue
		}
		res[i] = x.top(ctx, r)
	}
	return res
}

// top delivers one queue recipient and folds its leaves into one result.
func (x *run) top(ctx context.Context, r queue.Recipient) queue.Result {
	x.leaves = nil
	x.seen = map[string]bool{}
	x.fwd = map[fwdKey][]cleanup.Recipient{}
	x.fwdOrder = nil
	x.topAddr = r.Addr
	env := x.d.Envelope
	at := attr{
		rcpt: r.Addr, sender: env.Sender, notify: r.Notify, orcpt: r.ORCPT,
		envid: env.EnvID, ret: env.Ret,
	}
	if x.a.p.origRcpt {
		// An empty original recipient means it was not recorded:
		// no X-Original-To (Postfix's mail_copy).
		at.orig = r.Original
	}
	at.delivered = r.Addr
	x.recipient(ctx, at)
	x.flushForwards(ctx)
	return x.fold(r)
}

// fold turns the leaves of one queue recipient into its result: any
// deferral defers the recipient (Postfix retries the whole expansion),
// else any bounce bounces it, else it was delivered.
func (x *run) fold(r queue.Recipient) queue.Result {
	if len(x.leaves) == 0 {
		// Everything was a duplicate of an earlier recipient's
		// delivery in this request (Postfix logs nothing for it).
		return queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "local", Reason: "duplicate of an earlier delivery"}
	}
	pick := -1
	for _, want := range []queue.Outcome{queue.Delayed, queue.Failed} {
		for i, l := range x.leaves {
			if l.outcome == want {
				pick = i
				break
			}
		}
		if pick >= 0 {
			break
		}
	}
	if pick < 0 {
		pick = 0
	}
	if len(x.leaves) > 1 {
		for _, l := range x.leaves {
			x.a.log.Info(fmt.Sprintf("%s: expansion of <%s>: to=<%s>, dsn=%s, status=%s (%s)", x.d.QueueID, r.Addr, l.addr, l.dsn, statusWord(l.outcome), l.reason),
				"queue_id", x.d.QueueID)
		}
	}
	l := x.leaves[pick]
	return queue.Result{Outcome: l.outcome, DSN: l.dsn, Relay: "local", Reason: l.reason}
}

func statusWord(o queue.Outcome) string {
	switch o {
	case queue.Delivered:
		return "sent"
	case queue.Failed:
		return "bounced"
	}
	return "deferred"
}

func (x *run) add(at attr, o queue.Outcome, dsn, reason string) {
	x.leaves = append(x.leaves, leaf{outcome: o, dsn: dsn, reason: reason, addr: at.rcpt})
}

func (x *run) bounce(at attr, dsn, format string, args ...any) {
	x.add(at, queue.Failed, dsn, fmt.Sprintf(format, args...))
}

func (x *run) deferr(at attr, dsn, format string, args ...any) {
	x.add(at, queue.Delayed, dsn, fmt.Sprintf(format, args...))
}

// once reports whether key was already handled in this request; when it
// was, the earlier leaves are repeated for the current queue recipient.
// Otherwise it returns a function that records the leaves added from now
// on as key's result.
func (x *run) once(key string) (bool, func()) {
	if prev, ok := x.done[key]; ok {
		x.leaves = append(x.leaves, prev...)
		return true, nil
	}
	x.done[key] = nil
	start := len(x.leaves)
	return false, func() { x.done[key] = append([]leaf(nil), x.leaves[start:]...) }
}

// recipient is deliver_recipient(): loop checks, address split, then the
// delivery switch.
func (x *run) recipient(ctx context.Context, at attr) {
	at.level++
	if at.level > 100 {
		x.a.log.Warn("recipient nesting limit exceeded for "+at.rcpt, "queue_id", x.d.QueueID)
		x.bounce(at, "5.4.6", "recipient nesting limit exceeded")
		return
	}
	key := fmt.Sprintf("recipient %d %s", at.level, at.rcpt)
	if x.seen[key] {
		return
	}
	x.seen[key] = true
	lc := strings.ToLower(at.rcpt)
	if x.loop[lc] || x.loop[strings.ToLower(address.Quote(at.rcpt))] {
		x.bounce(at, "5.4.6", "mail forwarding loop for %s", at.rcpt)
		return
	}
	if at.delivered == "" {
		at.delivered = at.rcpt
	}
	parts := address.Split(lc)
	at.local, at.domain = parts.Local, parts.Domain
	at.user, at.ext, at.delim = at.local, "", ""
	if x.a.p.delims != "" {
		user, ext := address.SplitExtension(at.local, x.a.p.delims, x.a.p.split)
		if ext != "" {
			if strings.Contains(ext, "/") {
				x.a.log.Warn(fmt.Sprintf("%s: address with illegal extension: %s", x.d.QueueID, at.local), "queue_id", x.d.QueueID)
				at.local = user
			} else {
				at.delim, at.ext = ext[:1], ext[1:]
			}
			at.user = user
		}
	}
	if at.user == "" {
		x.bounce(at, "5.1.3", "null username in %q", at.rcpt)
		return
	}
	x.deliverSwitch(ctx, at)
}

// deliverSwitch is deliver_switch(): aliases, then resubmission for
// owner-/include expansions, then .forward, mailbox, unknown user.
func (x *run) deliverSwitch(ctx context.Context, at attr) {
	at.level++
	at.unmatched = ""
	if x.alias(ctx, at, at.local) {
		return
	}
	if at.ext != "" {
		if x.a.p.extProp&expAlias != 0 {
			at.unmatched = at.ext
		}
		if x.alias(ctx, at, at.user) {
			return
		}
		at.unmatched = at.ext
	}
	if at.owner != "" && !strings.EqualFold(at.owner, at.user) {
		x.indirect(at)
		return
	}
	if at.expType == expInclude {
		x.indirect(at)
		return
	}
	u, ok, err := x.a.lookupUser(ctx, at.user)
	if err != nil {
		x.a.log.Warn(fmt.Sprintf("error looking up passwd info for %s: %v", at.user, err), "queue_id", x.d.QueueID)
		x.deferr(at, "4.0.0", "user lookup error")
		return
	}
	if ok && u.home != "" {
		if _, err := os.Stat(u.home); err != nil {
			x.deferr(at, "4.3.0", "cannot access home directory %s: %s", u.home, errnoText(err))
			return
		}
	}
	if x.dotforward(ctx, at, u, ok) {
		return
	}
	if x.mailbox(ctx, at, u, ok) {
		return
	}
	x.unknown(ctx, at)
}

// lookupUser finds a local user; ok is false for an unknown one.
func (a *Agent) lookupUser(ctx context.Context, name string) (identity, bool, error) {
	u, err := a.users.LookupUser(ctx, name)
	if errors.Is(err, auth.ErrUnknownUser) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, err
	}
	id := identity{uid: u.UID, gid: u.GID, name: u.Name, home: u.Home, shell: u.Extra["shell"]}
	if id.name == "" {
		id.name = name
	}
	if !a.root {
		// Not root: everything runs as this process's user.
		id.uid, id.gid = a.self.uid, a.self.gid
	}
	return id, true, nil
}

// alias is deliver_alias(): expand name through alias_maps.
func (x *run) alias(ctx context.Context, at attr, name string) bool {
	a := x.a
	if at.expFrom != "" && strings.EqualFold(at.expFrom, name) {
		return false
	}
	if at.level > 100 {
		a.log.Warn("alias database loop for "+name, "queue_id", x.d.QueueID)
		x.bounce(at, "5.4.6", "alias database loop for %s", name)
		return true
	}
	if len(a.aliases) == 0 {
		return false
	}
	res, found, err := a.aliases.Find(ctx, name)
	if err != nil {
		a.log.Warn(fmt.Sprintf("alias_maps lookup problem for %s: %v", name, err), "queue_id", x.d.QueueID)
		x.deferr(at, "4.3.0", "alias database unavailable")
		return true
	}
	if !found {
		return false
	}
	at.expFrom = name
	at.expType = expAlias
	if uid := a.aliasOwner[res.Index]; uid == 0 {
		at.rights = nil
	} else {
		u, ok, err := a.sys.byUID(uid)
		if err != nil || !ok {
			a.log.Warn(fmt.Sprintf("cannot find alias database owner for %v", res.Map), "queue_id", x.d.QueueID)
			x.deferr(at, "4.3.0", "cannot find alias database owner")
			return true
		}
		at.rights = &identity{uid: u.UID, gid: u.GID, name: u.Name, home: u.Home, shell: u.Extra["shell"]}
	}
	owner := ""
	if a.p.ownerSpecial {
		ores, ok, err := a.aliases.Find(ctx, "owner-"+name)
		if err != nil {
			x.deferr(at, "4.3.0", "alias database unavailable")
			return true
		}
		if ok {
			owner = "owner-" + name
			if a.p.expandOwnerAlias {
				owner = ores.Value
			}
			owner = a.canonical(owner)
		}
	}
	at.owner = owner
	if owner != "" {
		at.sender = owner
		at.envid, at.ret, at.orcpt, at.orig = "", "", "", ""
	}
	if !a.p.frozenDelivered {
		at.delivered = at.rcpt
	}
	at.notify = withoutSuccess(at.notify)
	n := x.tokens(ctx, at, res.Value)
	if n < 1 {
		a.log.Warn("no recipient in alias lookup result for "+name, "queue_id", x.d.QueueID)
		x.deferr(at, "4.3.0", "alias database unavailable")
	}
	return true
}

// withoutSuccess drops NOTIFY=SUCCESS, which aliases never propagate;
// SUCCESS alone becomes NEVER.
func withoutSuccess(n []string) []string {
	var out []string
	had := false
	for _, k := range n {
		if strings.EqualFold(k, "SUCCESS") {
			had = true
			continue
		}
		out = append(out, k)
	}
	if had && len(out) == 0 {
		return []string{"NEVER"}
	}
	return out
}

// canonical makes an address fully qualified with $myorigin.
func (a *Agent) canonical(addr string) string {
	if !strings.Contains(addr, "@") {
		return addr + "@" + a.p.myorigin
	}
	return addr
}

// tokens delivers every destination of an alias value or a file line and
// returns how many there were.
func (x *run) tokens(ctx context.Context, at attr, text string) int {
	toks := splitTokens(text)
	for _, t := range toks {
		x.token(ctx, at, t)
	}
	return len(toks)
}

// token is deliver_token(): one destination.
func (x *run) token(ctx context.Context, at attr, t string) {
	switch {
	case strings.HasPrefix(t, "/"):
		x.file(ctx, at, t)
	case strings.HasPrefix(t, "|"):
		x.command(ctx, at, t[1:], false)
	case len(t) >= 9 && strings.EqualFold(t[:9], ":include:"):
		x.include(ctx, at, strings.TrimSpace(t[9:]))
	default:
		x.resolveAddr(ctx, at, t)
	}
}

// resolveAddr is deliver_resolve_addr(): a local address is delivered
// here, recursively; any other is forwarded as a new message.
func (x *run) resolveAddr(ctx context.Context, at attr, addr string) {
	at.level++
	addr = strings.TrimSpace(addr)
	if addr == "" || strings.HasSuffix(addr, "@") {
		x.bounce(at, "5.1.3", "bad recipient address syntax: %s", addr)
		return
	}
	addr = x.a.canonical(addr)
	if at.unmatched != "" {
		// Splice the unmatched extension in before the domain
		// (Postfix's deliver_resolve_tree).
		i := strings.LastIndexByte(addr, '@')
		addr = addr[:i] + at.delim + at.unmatched + addr[i:]
	}
	at.rcpt = addr
	dom := addr[strings.LastIndexByte(addr, '@')+1:]
	local, err := x.a.isLocal(ctx, dom)
	if err != nil {
		x.deferr(at, "4.3.0", "address resolver failure")
		return
	}
	if local {
		x.recipient(ctx, at)
	} else {
		x.indirect(at)
	}
}

// isLocal reports whether domain is delivered by this agent: it matches
// mydestination (Postfix's resolve_local also accepts the addresses of
// inet_interfaces as [literals]; postkit does not).
func (a *Agent) isLocal(ctx context.Context, domain string) (bool, error) {
	return a.localDomains.Match(ctx, strings.TrimSuffix(strings.ToLower(domain), "."))
}

// indirect is deliver_indirect(): queue the address for resubmission.
func (x *run) indirect(at attr) {
	k := fwdKey{sender: at.sender, envid: at.envid, ret: at.ret}
	if x.a.p.hdrMask&hdrForward != 0 {
		k.delivered = at.delivered
	}
	if _, ok := x.fwd[k]; !ok {
		x.fwdOrder = append(x.fwdOrder, k)
	}
	x.fwd[k] = append(x.fwd[k], cleanup.Recipient{Addr: at.rcpt, Original: at.orig, Notify: at.notify, ORCPT: at.orcpt})
	// Remember which leaf slot this becomes; flushForwards fills it.
	// Postfix reports a forwarded copy under the queue recipient.
	x.leaves = append(x.leaves, leaf{outcome: queue.Pending, addr: x.topAddr, fwd: &k})
}

// flushForwards submits one new message per group of forwarded recipients
// and records "forwarded as ID" (or the failure) for each of them.
func (x *run) flushForwards(ctx context.Context) {
	for _, k := range x.fwdOrder {
		rcpts := x.fwd[k]
		o, dsn, reason := queue.Delivered, "2.0.0", ""
		id, err := x.forward(ctx, k, rcpts)
		if err != nil {
			x.a.log.Warn(fmt.Sprintf("%s: cannot forward to %d recipient(s): %v", x.d.QueueID, len(rcpts), err), "queue_id", x.d.QueueID)
			o, dsn, reason = queue.Delayed, "4.3.0", "mail forwarding failed: "+err.Error()
		} else {
			reason = "forwarded as " + id
		}
		for i := range x.leaves {
			if l := &x.leaves[i]; l.fwd != nil && *l.fwd == k {
				l.outcome, l.dsn, l.reason, l.fwd = o, dsn, reason, nil
			}
		}
	}
}

func (x *run) forward(ctx context.Context, k fwdKey, rcpts []cleanup.Recipient) (string, error) {
	if x.a.resub == nil {
		return "", errors.New("no resubmission service configured")
	}
	rc, err := x.d.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var r io.Reader = rc
	if k.delivered != "" {
		h := "Delivered-To: " + address.Quote(k.delivered) + "\r\n"
		r = io.MultiReader(strings.NewReader(h), rc)
	}
	env := *x.d.Envelope
	env.QueueID = ""
	env.Sender = k.sender
	env.EnvID = k.envid
	env.Ret = k.ret
	env.Recipients = rcpts
	env.Redirect, env.Filter, env.Hold, env.HoldReason = "", "", false, ""
	id, err := x.a.resub.Resubmit(ctx, k.sender, rcpts, &env, r)
	if err == nil {
		x.a.log.Info(fmt.Sprintf("%s: forwarded as %s", x.d.QueueID, id), "queue_id", x.d.QueueID)
	}
	return id, err
}

// localAttrs are the $name values of forward_path and luser_relay.
func (at attr) localAttrs(u identity) map[string]string {
	m := map[string]string{
		"user":      at.user,
		"local":     at.local,
		"domain":    at.domain,
		"recipient": at.rcpt,
	}
	if u.home != "" {
		m["home"] = u.home
	}
	if u.shell != "" {
		m["shell"] = u.shell
	}
	if at.ext != "" {
		m["extension"] = at.ext
		m["recipient_delimiter"] = at.delim
	}
	return m
}

// dotforward is deliver_dotforward(): the first existing file of
// forward_path, owned by the user or root and not world-writable.
func (x *run) dotforward(ctx context.Context, at attr, u identity, ok bool) bool {
	a := x.a
	if !ok || u.home == "" || len(a.p.forwardPath) == 0 {
		return false
	}
	if !a.p.frozenDelivered {
		at.delivered = at.rcpt
	}
	uid := u.uid
	at.rights = &u
	at.expType = expForward
	at.owner = at.user
	attrs := at.localAttrs(u)
	var path string
	var st os.FileInfo
	for _, elem := range a.p.forwardPath {
		p, undef, err := expandAttrs(elem, attrs, a.p.fwdFilter)
		if err != nil {
			a.log.Warn(fmt.Sprintf("forward_path: %v", err), "queue_id", x.d.QueueID)
			continue
		}
		if undef || p == "" {
			continue
		}
		if fi, err := os.Lstat(p); err == nil {
			path, st = p, fi
			// A file chosen by the extension, or a policy that does
			// not propagate into .forward, drops the extension.
			if strings.Contains(elem, "extension") || a.p.extProp&expForward == 0 {
				at.unmatched = ""
			}
			break
		}
	}
	if path == "" {
		return false
	}
	if x.seen["forward "+path] {
		return x.seen["forward-done "+path]
	}
	x.seen["forward "+path] = true
	at.expFrom = at.local
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		a.log.Warn(fmt.Sprintf("file %s is not a regular file", path), "queue_id", x.d.QueueID)
		return false
	case sys != nil && sys.Uid != 0 && int(sys.Uid) != uid && !(a.root == false && int(sys.Uid) == a.self.uid):
		a.log.Warn(fmt.Sprintf("file %s has bad owner uid %d", path, sys.Uid), "queue_id", x.d.QueueID)
		return false
	case st.Mode().Perm()&0o002 != 0:
		a.log.Warn(fmt.Sprintf("file %s is world writable", path), "queue_id", x.d.QueueID)
		return false
	}
	// Read with the user's rights and without following a link, and only
	// if it is still the file checked above (Postfix's open_as()).
	f, err := openAs(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, u.uid, u.gid)
	if err != nil {
		a.log.Warn(fmt.Sprintf("cannot open file %s: %s", path, errnoText(err)), "queue_id", x.d.QueueID)
		return false
	}
	if fst, err := f.Stat(); err != nil || !os.SameFile(fst, st) {
		f.Close()
		a.log.Warn(fmt.Sprintf("file %s changed while it was opened", path), "queue_id", x.d.QueueID)
		return false
	}
	lines, err := readLogicalLines(f)
	f.Close()
	if err != nil {
		a.log.Warn(fmt.Sprintf("read file %s: %v", path, err), "queue_id", x.d.QueueID)
	}
	n := 0
	for _, l := range lines {
		n += x.tokens(ctx, at, l)
	}
	if n > 0 {
		x.seen["forward-done "+path] = true
		return true
	}
	return false
}

// include is deliver_include(): destinations from a file.
func (x *run) include(ctx context.Context, at attr, path string) {
	a := x.a
	at.level++
	if !strings.HasPrefix(path, "/") {
		a.log.Warn(fmt.Sprintf(":include:%s uses a relative path", path), "queue_id", x.d.QueueID)
		x.bounce(at, "5.3.5", "mail system configuration error")
		return
	}
	if x.seen["include "+path] {
		return
	}
	x.seen["include "+path] = true
	// Opened with the rights in force (a .forward's user, an alias
	// table's owner), as Postfix's open_as(): root's rights only for a
	// root-owned alias table.
	var f *os.File
	var err error
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer;
	// it is refused below as not a regular file.
	if at.rights != nil && at.rights.uid != 0 && a.root {
		f, err = openAs(path, os.O_RDONLY|syscall.O_NONBLOCK, at.rights.uid, at.rights.gid)
	} else {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}
	if err != nil {
		a.log.Warn(fmt.Sprintf("cannot open include file %s: %s", path, errnoText(err)), "queue_id", x.d.QueueID)
		x.bounce(at, "5.3.5", "mail system configuration error")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		// Postfix: a warning and the generic text (checked against 3.7).
		a.log.Warn(fmt.Sprintf("not a regular file: %s", path), "queue_id", x.d.QueueID)
		x.bounce(at, "5.3.5", "mail system configuration error")
		return
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && (at.rights == nil || at.rights.uid == 0) {
		// Default rights must not let an include file's owner act as
		// the default account: use the owner's rights instead.
		if u, ok, _ := a.sys.byUID(int(sys.Uid)); ok {
			at.rights = &identity{uid: u.UID, gid: u.GID, name: u.Name, home: u.Home, shell: u.Extra["shell"]}
			if at.owner == "" {
				at.owner = u.Name
			}
		}
	}
	at.expType = expInclude
	at.expFrom = at.local
	if a.p.extProp&expInclude == 0 {
		at.unmatched = ""
	}
	lines, err := readLogicalLines(f)
	if err != nil {
		x.deferr(at, "4.3.0", "error reading include file %s: %v", path, err)
		return
	}
	for _, l := range lines {
		x.tokens(ctx, at, l)
	}
}

// mailbox is deliver_mailbox(): mailbox_command(_maps), Maildir or mbox.
func (x *run) mailbox(ctx context.Context, at attr, u identity, ok bool) bool {
	a := x.a
	if !ok {
		return false
	}
	// One delivery per mailbox and request; a later recipient that ends
	// in the same mailbox gets the same result.
	dup, record := x.once("mailbox " + at.local)
	if dup {
		return true
	}
	defer record()
	if !a.p.frozenDelivered {
		at.delivered = at.rcpt
	}
	at.rights = &u
	if len(a.commandMaps) > 0 {
		res, found, err := a.commandMaps.Find(ctx, at.user)
		if err != nil {
			x.deferr(at, "4.3.0", "table lookup failure")
			return true
		}
		if found {
			x.command(ctx, at, res.Value, true)
			return true
		}
	}
	if a.p.mailboxCommand != "" {
		x.command(ctx, at, a.p.mailboxCommand, true)
		return true
	}
	switch {
	case strings.HasSuffix(a.p.homeMailbox, "/"):
		x.maildir(ctx, at, u, u.home+"/"+a.p.homeMailbox)
	case strings.HasSuffix(a.p.spoolDir, "/"):
		x.maildir(ctx, at, u, a.p.spoolDir+at.user+"/")
	case a.p.homeMailbox != "":
		x.mboxFile(ctx, at, u, u.home+"/"+a.p.homeMailbox, "")
	default:
		x.mboxFile(ctx, at, u, a.p.spoolDir+"/"+at.user, a.p.spoolDir)
	}
	return true
}

// unknown is deliver_unknown(): luser_relay, postmaster, or bounce.
func (x *run) unknown(ctx context.Context, at attr) {
	a := x.a
	at.level++
	if a.p.luserRelay != "" {
		dest, _, err := expandAttrs(a.p.luserRelay, at.localAttrs(identity{}), a.p.fwdFilter)
		if err != nil {
			a.log.Warn("luser_relay: "+err.Error(), "queue_id", x.d.QueueID)
			x.deferr(at, "4.3.5", "local configuration error")
			return
		}
		if strings.EqualFold(dest, at.rcpt) {
			x.bounce(at, "5.1.1", "unknown user: %q", at.user)
			return
		}
		at.ext, at.delim = "", ""
		x.resolveAddr(ctx, at, dest)
		return
	}
	if at.user == "postmaster" {
		a.log.Warn("required alias not found: postmaster", "queue_id", x.d.QueueID)
		x.add(at, queue.Delivered, "2.0.0", "discarded")
		return
	}
	x.bounce(at, "5.1.1", "unknown user: %q", at.user)
}

// errnoText is the strerror text of an OS error, as Postfix's %m prints it.
func errnoText(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		s := en.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// errDSN maps an OS error to a DSN as Postfix's mbox_dsn() does:
// EAGAIN 4.2.0, ENOSPC 4.3.0, EDQUOT and EFBIG 5.2.2, else def.
func errDSN(err error, def string) string {
	switch {
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ESTALE):
		return "4.2.0"
	case errors.Is(err, syscall.ENOSPC):
		return "4.3.0"
	case errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return "5.2.2"
	}
	return def
}

func outcomeOf(dsn string) queue.Outcome {
	switch dsn[0] {
	case '2':
		return queue.Delivered
	case '4':
		return queue.Delayed
	}
	return queue.Failed
}

// defaultRights returns the identity for |command and /file deliveries:
// the rights in force unless they are root's (or none), in which case
// default_privs. When the process is not root, it is always the process's
// own user.
func (x *run) defaultRights(ctx context.Context, r *identity) (identity, error) {
	a := x.a
	if !a.root {
		id := a.self
		if r != nil {
			id.name, id.home, id.shell = r.name, r.home, r.shell
		}
		return id, nil
	}
	if r != nil && r.uid != 0 {
		return *r, nil
	}
	u, err := a.sys.LookupUser(ctx, a.p.defaultPrivs)
	if err != nil {
		return identity{}, fmt.Errorf("default_privs user %q: %w", a.p.defaultPrivs, err)
	}
	if u.UID == 0 {
		return identity{}, fmt.Errorf("default_privs user %q has root privileges", a.p.defaultPrivs)
	}
	id := identity{uid: u.UID, gid: u.GID, name: u.Name, home: u.Home, shell: u.Extra["shell"]}
	if r != nil {
		// A root user's own command: default_privs' ids, the user's
		// environment (Postfix changes only the ids).
		id.name, id.home, id.shell = r.name, r.home, r.shell
	}
	return id, nil
}
