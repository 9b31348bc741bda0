package bounce

// Retries and bounces end to end against Postfix's smtp-sink: the real
// scheduler over a real queue, with a FakeClock, delivering over loopback
// to smtp-sink instances that answer 4xx to RCPT, DATA or end of DATA,
// 421 at connect and 5xx to RCPT. The notices are written by Notifier and
// queued through cleanup into the same queue (CleanupSubmitter), from
// where the scheduler delivers them too. The test records when each
// attempt happens and checks it against spec §7.4, and reads every
// notice with Python's email module and go-message.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postkit-mail/postkit/cleanup"
	"github.com/postkit-mail/postkit/internal/maildate"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/queue"
)

// attempt is one Deliver call: when (by the fake clock), which message,
// where.
type attempt struct {
	at      time.Time
	id      string
	nexthop string
}

// captured is a message the capture destination took: a notice.
type captured struct {
	at     time.Time
	id     string
	sender string
	rcpt   string
	data   []byte
}

// sinkDeliverer is a small SMTP client (net/smtp) that reports each
// recipient as Postfix's smtp(8) logs it; the next hop "capture" keeps
// the message instead (the senders' mailboxes, where notices end up).
type sinkDeliverer struct {
	clk *queue.FakeClock

	mu       sync.Mutex
	attempts []attempt
	got      []captured
}

func (sd *sinkDeliverer) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	sd.mu.Lock()
	sd.attempts = append(sd.attempts, attempt{at: sd.clk.Now(), id: d.QueueID, nexthop: d.Nexthop})
	sd.mu.Unlock()
	res := make([]queue.Result, len(d.Recipients))
	all := func(r queue.Result) []queue.Result {
		for i := range res {
			if res[i].Outcome == queue.Pending {
				res[i] = r
			}
		}
		return res
	}
	if d.Nexthop == "capture" {
		rc, err := d.Open()
		if err != nil {
			return all(queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Reason: err.Error()})
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return all(queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Reason: err.Error()})
		}
		sd.mu.Lock()
		for _, r := range d.Recipients {
			sd.got = append(sd.got, captured{at: sd.clk.Now(), id: d.QueueID, sender: d.Envelope.Sender, rcpt: r.Addr, data: data})
		}
		sd.mu.Unlock()
		return all(queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: "capture", Reason: "delivered to mailbox"})
	}
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, "tcp", d.Nexthop)
	if err != nil {
		return all(queue.Result{Outcome: queue.Delayed, DSN: "4.4.1", Site: true,
			Reason: "connect to " + d.Nexthop + ": " + err.Error()})
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	ta := nc.RemoteAddr().(*net.TCPAddr)
	host := ta.IP.String() + "[" + ta.IP.String() + "]"
	relay := fmt.Sprintf("%s:%d", host, ta.Port)
	// Postfix's smtp(8) wording: "host H[A] said: REPLY (in reply to
	// CMD command)", and "refused to talk to me" for the greeting.
	reply := func(err error, what string, site bool) queue.Result {
		var te *textproto.Error
		if !errors.As(err, &te) {
			return queue.Result{Outcome: queue.Delayed, DSN: "4.4.2", Relay: relay, Site: site,
				Reason: "lost connection with " + host + " " + what + ": " + err.Error()}
		}
		r := queue.Result{Outcome: queue.Delayed, DSN: fmt.Sprintf("%d.0.0", te.Code/100), Relay: relay, Site: site}
		if f, _, _ := strings.Cut(te.Msg, " "); len(f) >= 5 && f[1] == '.' && int(f[0]-'0') == te.Code/100 {
			r.DSN = f
		}
		if te.Code >= 500 {
			r.Outcome = queue.Failed
		}
		if what == "" {
			r.Reason = fmt.Sprintf("host %s refused to talk to me: %d %s", host, te.Code, te.Msg)
		} else {
			r.Reason = fmt.Sprintf("host %s said: %d %s (in reply to %s command)", host, te.Code, te.Msg, what)
		}
		return r
	}
	c, err := smtp.NewClient(nc, "127.0.0.1")
	if err != nil {
		nc.Close()
		return all(reply(err, "", true))
	}
	defer c.Close()
	if err := c.Hello("postkit.test"); err != nil {
		return all(reply(err, "EHLO", true))
	}
	if err := c.Mail(d.Envelope.Sender); err != nil {
		return all(reply(err, "MAIL FROM", false))
	}
	accepted := 0
	for i, r := range d.Recipients {
		if err := c.Rcpt(r.Addr); err != nil {
			res[i] = reply(err, "RCPT TO", false)
			continue
		}
		accepted++
	}
	if accepted == 0 {
		c.Quit()
		return res
	}
	w, err := c.Data()
	if err != nil {
		return all(reply(err, "DATA", false))
	}
	rc, err := d.Open()
	if err != nil {
		return all(queue.Result{Outcome: queue.Delayed, DSN: "4.3.0", Reason: err.Error()})
	}
	_, err = io.Copy(w, rc)
	rc.Close()
	if err != nil {
		return all(queue.Result{Outcome: queue.Delayed, DSN: "4.4.2", Relay: relay,
			Reason: "lost connection with " + host + " while sending message content"})
	}
	if err := w.Close(); err != nil {
		return all(reply(err, "end of DATA", false))
	}
	c.Quit()
	return all(queue.Result{Outcome: queue.Delivered, DSN: "2.0.0", Relay: relay, Reason: "250 2.0.0 Ok"})
}

func (sd *sinkDeliverer) snapshot() ([]attempt, []captured) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return slices.Clone(sd.attempts), slices.Clone(sd.got)
}

// specAttempts is spec §7.4's schedule, written independently of the
// scheduler: a message arriving at 0 whose attempts all fail is tried at
// 0; after an attempt at t its file's time is t + clamp(t, minimal,
// maximal backoff); the next attempt comes at the first deferred-queue
// scan (every queue_run_delay from the scheduler's start at 0) at or
// after that; after an attempt at or past the lifetime the message
// expires.
func specAttempts(runDelay, minB, maxB, life time.Duration) []time.Duration {
	var out []time.Duration
	for t := time.Duration(0); ; {
		out = append(out, t)
		if t >= life {
			return out
		}
		due := t + min(max(t, minB), maxB)
		t = (due + runDelay - 1) / runDelay * runDelay
	}
}

// dsnFields is a delivery-status part as blocks of (name, value).
type dsnFields [][][2]string

func (d dsnFields) field(block int, name string) (string, bool) {
	if block >= len(d) {
		return "", false
	}
	for _, f := range d[block] {
		if strings.EqualFold(f[0], name) {
			return f[1], true
		}
	}
	return "", false
}

func (d dsnFields) names(block int) []string {
	var out []string
	for _, f := range d[block] {
		out = append(out, f[0])
	}
	return out
}

// parseNotice reads a notice with Python's email module
// (testdata/dsn_summary.py) and with go-message, checks that both see the
// same delivery-status fields, and returns them.
func parseNotice(t *testing.T, name string, data []byte) dsnFields {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notice.eml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := pythonSummary(path)
	if err != nil {
		t.Fatalf("%s: Python's email module: %v\n%s\n%s", name, err, out, data)
	}
	var py struct {
		Defects []string
		Tree    []string
		DSN     [][][]string
	}
	if err := json.Unmarshal([]byte(out), &py); err != nil {
		t.Fatalf("%s: the Python summary: %v\n%s", name, err, out)
	}
	var fromPy dsnFields
	for _, b := range py.DSN {
		var blk [][2]string
		for _, f := range b {
			blk = append(blk, [2]string{f[0], f[1]})
		}
		fromPy = append(fromPy, blk)
	}
	gm, err := goMessageSummary(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	// goMessageSummary lists "  Name: value" lines and "  --" between
	// blocks; fold continuation lines as Python does.
	var fromGo dsnFields
	var blk [][2]string
	sc := bufio.NewScanner(strings.NewReader(gm))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "  ") || strings.HasSuffix(line, " bytes") {
			continue
		}
		line = line[2:]
		if line == "--" {
			fromGo = append(fromGo, blk)
			blk = nil
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		blk = append(blk, [2]string{textproto.CanonicalMIMEHeaderKey(k), strings.Join(strings.Fields(v), " ")})
	}
	for i := range fromPy {
		for j := range fromPy[i] {
			fromPy[i][j][1] = strings.Join(strings.Fields(fromPy[i][j][1]), " ")
		}
	}
	// go-message gives field names in canonical case.
	canon := make(dsnFields, len(fromPy))
	for i, b := range fromPy {
		for _, f := range b {
			canon[i] = append(canon[i], [2]string{textproto.CanonicalMIMEHeaderKey(f[0]), f[1]})
		}
	}
	if fmt.Sprint(canon) != fmt.Sprint(fromGo) {
		t.Errorf("%s: Python and go-message read different delivery-status fields:\npython: %v\ngo:     %v", name, fromPy, fromGo)
	}
	return fromPy
}

// sinkRig is the system under test.
type sinkRig struct {
	clk *queue.FakeClock
	q   *queue.Queue
	s   *queue.Scheduler
	d   *sinkDeliverer
	log *lockedBuffer
}

func (r *sinkRig) send(t *testing.T, sender string, rcpts ...string) string {
	t.Helper()
	ctx := context.Background()
	content := "From: <" + sender + ">\r\nTo: <" + rcpts[0] + ">\r\nSubject: retry test\r\n\r\nbody\r\n"
	f, err := r.q.Create(ctx, r.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, content); err != nil {
		t.Fatal(err)
	}
	env := &cleanup.Envelope{QueueID: f.ID(), Arrival: r.clk.Now(), Sender: sender, Size: int64(len(content))}
	for _, a := range rcpts {
		env.Recipients = append(env.Recipients, cleanup.Recipient{Addr: a, Original: a})
	}
	id := f.ID()
	if err := f.Commit(ctx, env); err != nil {
		t.Fatal(err)
	}
	return id
}

// sync lets the scheduler finish everything due, including the notices
// queued meanwhile (their commit wakes it).
func (r *sinkRig) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 3 {
		if err := r.s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRetriesAndNoticesAgainstSMTPSink(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		oracle.Unavailable(t, "no /usr/bin/python3 to read the notices with")
	}
	const (
		runDelay   = 300 * time.Second  // queue_run_delay
		minBackoff = 300 * time.Second  // minimal_backoff_time
		maxBackoff = 4000 * time.Second // maximal_backoff_time
		maxLife    = 2 * 24 * time.Hour // maximal_queue_lifetime
		bounceLife = 6 * time.Hour      // bounce_queue_lifetime
		warnAfter  = 4 * time.Hour      // delay_warning_time
	)
	hops := map[string]string{
		"sender.test":   "capture",
		"ok.test":       oracle.StartSMTPSink(t),
		"rcpt4xx.test":  oracle.StartSMTPSink(t, "-r", "RCPT"),
		"rcpt5xx.test":  oracle.StartSMTPSink(t, "-f", "RCPT"),
		"data4xx.test":  oracle.StartSMTPSink(t, "-r", "DATA"),
		"dot4xx.test":   oracle.StartSMTPSink(t, "-r", "."),
		"greet421.test": oracle.StartSMTPSink(t, "-Q", "CONNECT"),
	}
	hops["softsender.test"] = hops["rcpt4xx.test"] // dave's mailbox defers
	route := queue.RouterFunc(func(_ context.Context, _ *cleanup.Envelope, rcpt string) (queue.Route, error) {
		_, dom, _ := strings.Cut(rcpt, "@")
		if h, ok := hops[dom]; ok {
			return queue.Route{Transport: "smtp", Nexthop: h}, nil
		}
		return queue.Route{}, &queue.RouteError{Permanent: true, DSN: "5.1.2", Reason: "unknown domain " + dom}
	})

	t0 := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	clk := queue.NewFakeClock(t0)
	quiet := slog.New(slog.DiscardHandler)
	q, err := queue.Open(t.TempDir(), queue.Options{Clock: clk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cl, err := cleanup.New(cleanup.Config{Hostname: "mail.example.net", Location: time.UTC, Now: clk.Now, Logger: quiet}, q)
	if err != nil {
		t.Fatal(err)
	}
	settings := Defaults("mail.example.net")
	settings.Location, settings.Now = time.UTC, clk.Now
	settings.MaximalQueueLifetime, settings.DelayWarningTime = maxLife, warnAfter
	nf := NewNotifier(settings, NewCleanupSubmitter(cl))
	nf.Logger = quiet
	sd := &sinkDeliverer{clk: clk}
	log := &lockedBuffer{}
	s, err := queue.NewScheduler(q, queue.SchedulerConfig{Deliverer: sd, Router: route, Notifier: nf, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(log, nil)), Poll: time.Hour,
		QueueRunDelay: runDelay, MinimalBackoff: minBackoff, MaximalBackoff: maxBackoff,
		MaxQueueLifetime: maxLife, BounceLifetime: bounceLife, DelayWarning: warnAfter})
	if err != nil {
		t.Fatal(err)
	}
	r := &sinkRig{clk: clk, q: q, s: s, d: sd, log: log}
	s.Start()
	t.Cleanup(func() { s.Stop(context.Background()) })

	// The soft cases: one message each, all failing temporarily until
	// they expire.
	soft := map[string]string{ // domain -> Diagnostic-Code Postfix writes
		"rcpt4xx.test":  "smtp; 450 4.3.0 Error: command failed",
		"data4xx.test":  "smtp; 450 4.3.0 Error: command failed",
		"dot4xx.test":   "smtp; 450 4.3.0 Error: command failed",
		"greet421.test": "smtp; 421 4.0.0 Server closing connection",
	}
	softDSN := map[string]string{"rcpt4xx.test": "4.3.0", "data4xx.test": "4.3.0", "dot4xx.test": "4.3.0", "greet421.test": "4.0.0"}
	ids := map[string]string{} // case -> queue ID
	for _, dom := range slices.Sorted(maps.Keys(soft)) {
		ids[dom] = r.send(t, "alice@sender.test", "user@"+dom)
	}
	// Five recipients, two accepted, one refused for good, two deferred:
	// only the deferred ones are tried again.
	mixed := []string{"a@ok.test", "b@rcpt5xx.test", "c@rcpt4xx.test", "d@ok.test", "e@rcpt4xx.test"}
	ids["mixed"] = r.send(t, "carol@sender.test", mixed...)
	ids["hard"] = r.send(t, "bob@sender.test", "user@rcpt5xx.test")
	// Mail from the null sender expires after bounce_queue_lifetime and
	// gets no notice.
	ids["null"] = r.send(t, "", "user@rcpt4xx.test")
	// A message whose non-delivery notice cannot be delivered: the notice
	// (from <>) is retried and expires after bounce_queue_lifetime.
	ids["undeliverable-notice"] = r.send(t, "dave@softsender.test", "user@rcpt5xx.test")

	r.sync(t)
	end := maxLife + 2*maxBackoff
	for clk.Now().Sub(t0) < end {
		clk.Advance(runDelay)
		r.sync(t)
	}
	attempts, got := sd.snapshot()

	byID := map[string][]time.Duration{}
	for _, a := range attempts {
		byID[a.id] = append(byID[a.id], a.at.Sub(t0))
	}
	full := specAttempts(runDelay, minBackoff, maxBackoff, maxLife)
	short := specAttempts(runDelay, minBackoff, maxBackoff, bounceLife)
	t.Logf("spec §7.4 schedule (s): %v", seconds(full))
	// The spec's own example, first: 0, 300, 600, 1200, 2400, 4800 s, then
	// every maximal_backoff_time rounded up to the next scan.
	if want := []int64{0, 300, 600, 1200, 2400, 4800, 9000, 13200}; !slices.Equal(seconds(full)[:8], want) {
		t.Fatalf("the model disagrees with the spec's example: %v", seconds(full)[:8])
	}
	for _, dom := range slices.Sorted(maps.Keys(soft)) {
		if g := byID[ids[dom]]; !slices.Equal(g, full) {
			t.Errorf("%s: attempts at %v s,\nspec §7.4 says %v s", dom, seconds(g), seconds(full))
		}
	}
	if g := byID[ids["mixed"]]; !slices.Equal(g, fullWithBatches(full)) {
		// The first pass makes one delivery per destination (ok, 5xx,
		// 4xx): three calls at 0; later passes only the 4xx one.
		t.Errorf("mixed: attempts at %v s, want %v s", seconds(g), seconds(fullWithBatches(full)))
	}
	for _, a := range attempts {
		if a.id == ids["mixed"] && a.at.After(t0) && a.nexthop != hops["rcpt4xx.test"] {
			t.Errorf("mixed: a retry at %v went to %s; only the deferred recipients are tried again", a.at.Sub(t0), a.nexthop)
		}
	}
	if g := byID[ids["hard"]]; !slices.Equal(g, []time.Duration{0}) {
		t.Errorf("hard failure: attempts at %v s, want one at 0", seconds(g))
	}
	if g := byID[ids["null"]]; !slices.Equal(g, short) {
		t.Errorf("null sender: attempts at %v s, want (bounce_queue_lifetime) %v s", seconds(g), seconds(short))
	}
	logs := log.String()
	for name, id := range ids {
		// The soft messages, the mixed one and the null sender's expire;
		// the hard failure and dave's message are done at once.
		want := 1
		if name == "hard" || name == "undeliverable-notice" {
			want = 0
		}
		if n := regexp.MustCompile(regexp.QuoteMeta(id)+`: from=<[^>]*>, status=expired, returned to sender`).FindAllStringIndex(logs, -1); len(n) != want {
			t.Errorf("%s (%s): %d expiry lines, want %d", name, id, len(n), want)
		}
	}
	// dave's notice: the one message from <> to dave@softsender.test.
	var daveNotice string
	for id := range byID {
		if strings.Contains(logs, id+": from=<>, status=expired") && id != ids["null"] {
			daveNotice = id
		}
	}
	if daveNotice == "" {
		t.Errorf("the undeliverable notice to dave did not expire after bounce_queue_lifetime")
	} else if g := byID[daveNotice]; !slices.Equal(g, short) {
		t.Errorf("the notice to dave: attempts at %v s, want (bounce_queue_lifetime) %v s", seconds(g), seconds(short))
	}

	// Nothing is left: every message was delivered, bounced or expired.
	for _, st := range queue.States {
		if es, _ := q.List(st); len(es) != 0 {
			t.Errorf("%d messages left in %s", len(es), st)
		}
	}

	// The notices: one delay warning per soft message, at its first
	// attempt at or after delay_warning_time; one expiry notice each at
	// the first attempt at or after maximal_queue_lifetime; the hard
	// failure's notice at once; nothing for mail from <>.
	warnAt := firstAtOrAfter(full, warnAfter)
	expireAt := full[len(full)-1]
	type key struct{ id, kind string }
	notices := map[key][]captured{}
	for _, c := range got {
		if c.sender != "" {
			t.Errorf("a notice from <%s>, want <>", c.sender)
		}
		subject := subjectOf(string(c.data))
		kind := map[string]string{"Undelivered Mail Returned to Sender": "failure",
			"Delayed Mail (still being retried)": "delay"}[subject]
		notices[key{reportedID(string(c.data)), kind}] = append(notices[key{reportedID(string(c.data)), kind}], c)
	}
	if len(got) != 2*len(soft)+2+1+1 {
		t.Errorf("%d notices delivered, want %d (a delay warning and an expiry notice for each of %d soft messages and the mixed one, the hard failure, the mixed one's failure)",
			len(got), 2*len(soft)+2+1+1, len(soft))
	}
	arrival := maildate.Format(t0)
	ours := map[string]dsnFields{}
	check := func(name string, c captured, kind, rcptAddr, action, status, diag string, retryUntil bool) {
		t.Helper()
		f := parseNotice(t, name, c.data)
		_, dom, _ := strings.Cut(rcptAddr, "@")
		ours[dom+"/"+kind] = f
		if len(f) < 2 {
			t.Errorf("%s: %d delivery-status blocks", name, len(f))
			return
		}
		wantMsg := [][2]string{{"Reporting-MTA", "dns; mail.example.net"}, {"X-Postfix-Queue-ID", reportedID(string(c.data))},
			{"X-Postfix-Sender", "rfc822; " + c.rcpt}, {"Arrival-Date", arrival}}
		if fmt.Sprint(f[0]) != fmt.Sprint(wantMsg) {
			t.Errorf("%s: per-message fields\n%v\nwant (as Postfix writes them)\n%v", name, f[0], wantMsg)
		}
		want := [][2]string{{"Final-Recipient", "rfc822; " + rcptAddr}, {"Original-Recipient", "rfc822;" + rcptAddr},
			{"Action", action}, {"Status", status}, {"Remote-MTA", "dns; 127.0.0.1"}, {"Diagnostic-Code", diag}}
		if retryUntil {
			want = append(want, [2]string{"Will-Retry-Until", maildate.Format(t0.Add(maxLife))})
		}
		if fmt.Sprint(f[1]) != fmt.Sprint(want) {
			t.Errorf("%s: recipient fields\n%v\nwant (as Postfix writes them)\n%v", name, f[1], want)
		}
	}
	for _, dom := range slices.Sorted(maps.Keys(soft)) {
		id := ids[dom]
		ds := notices[key{id, "delay"}]
		if len(ds) != 1 {
			t.Errorf("%s: %d delay warnings, want 1", dom, len(ds))
		} else {
			if ds[0].at.Sub(t0) != warnAt {
				t.Errorf("%s: delay warning at %v, want at the first attempt at or after delay_warning_time, %v", dom, ds[0].at.Sub(t0), warnAt)
			}
			check(dom+" delay warning", ds[0], "delay", "user@"+dom, "delayed", softDSN[dom], soft[dom], true)
		}
		fs := notices[key{id, "failure"}]
		if len(fs) != 1 {
			t.Errorf("%s: %d expiry notices, want 1", dom, len(fs))
			continue
		}
		if fs[0].at.Sub(t0) != expireAt {
			t.Errorf("%s: expiry notice at %v, want %v", dom, fs[0].at.Sub(t0), expireAt)
		}
		// Postfix reports an expired recipient as failed with its last
		// 4.x.x status and reply.
		check(dom+" expiry notice", fs[0], "failure", "user@"+dom, "failed", softDSN[dom], soft[dom], false)
	}
	if fs := notices[key{ids["hard"], "failure"}]; len(fs) != 1 || fs[0].at != t0 {
		t.Errorf("hard failure: notices %d, want one at once", len(fs))
	} else {
		check("hard failure", fs[0], "failure", "user@rcpt5xx.test", "failed", "5.3.0", "smtp; 500 5.3.0 Error: command failed", false)
	}
	mixedFail := notices[key{ids["mixed"], "failure"}]
	if len(mixedFail) != 2 {
		t.Errorf("mixed: %d failure notices, want 2 (the 5xx at once, the 4xx ones at expiry)", len(mixedFail))
	} else {
		slices.SortFunc(mixedFail, func(a, b captured) int { return a.at.Compare(b.at) })
		f := parseNotice(t, "mixed failure", mixedFail[0].data)
		if len(f) != 2 || fmt.Sprint(f[1][0]) != "[Final-Recipient rfc822; b@rcpt5xx.test]" {
			t.Errorf("mixed: the first notice lists %v, want only b@rcpt5xx.test", f)
		}
		f = parseNotice(t, "mixed expiry", mixedFail[1].data)
		if len(f) != 3 || fmt.Sprint(f[1][0], f[2][0]) != "[Final-Recipient rfc822; c@rcpt4xx.test] [Final-Recipient rfc822; e@rcpt4xx.test]" {
			t.Errorf("mixed: the expiry notice lists %v, want c and e", f)
		}
	}
	if ds := notices[key{ids["mixed"], "delay"}]; len(ds) != 1 {
		t.Errorf("mixed: %d delay warnings, want 1", len(ds))
	}
	for k, cs := range notices {
		if k.id == ids["null"] || k.id == daveNotice || k.id == ids["undeliverable-notice"] {
			t.Errorf("%d %s notices about %s captured (mail from <> gets none; dave's notice never reaches the capture)", len(cs), k.kind, k.id)
		}
	}

	// What Postfix's notices say about the same failures from the same
	// smtp-sink instances: the same fields in the same order, the same
	// values but for the host name, queue ID and dates.
	theirs := postfixSinkNotices(t, hops, slices.Sorted(maps.Keys(soft)))
	masked := func(f dsnFields) string {
		var b strings.Builder
		for _, blk := range f {
			for _, kv := range blk {
				switch strings.ToLower(kv[0]) {
				case "reporting-mta", "x-postfix-queue-id", "arrival-date", "will-retry-until":
					kv[1] = "*"
				}
				fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	for _, k := range slices.Sorted(maps.Keys(theirs)) {
		if o, ok := ours[k]; !ok {
			t.Errorf("%s: Postfix sent a notice, postkit did not", k)
		} else if mt, mo := masked(theirs[k]), masked(o); mt != mo {
			t.Errorf("%s: the delivery-status fields differ (- Postfix, + postkit):\n%s", k, oracle.Diff(mt, mo))
		}
	}
}

func fullWithBatches(full []time.Duration) []time.Duration {
	return append([]time.Duration{0, 0}, full...)
}

func firstAtOrAfter(ts []time.Duration, d time.Duration) time.Duration {
	for _, t := range ts {
		if t >= d {
			return t
		}
	}
	return -1
}

// seconds lists durations as whole seconds.
func seconds(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = int64(d / time.Second)
	}
	return out
}

// postfixSinkNotices sends one message per soft domain through a private
// Postfix 3.7 that relays each domain to the same smtp-sink instances as
// the test above and delivers its notices to a sink that keeps them, with
// delay warnings after 1 s and expiry after 3 s. It returns the
// delivery-status fields of each notice, keyed "domain/kind" (kind
// "delay" or "failure"), as Python's email module and go-message read
// them.
func postfixSinkNotices(t *testing.T, hops map[string]string, domains []string) map[string]dsnFields {
	t.Helper()
	oracle.Require(t, "postfix")
	keep := startSink(t)
	var routes []string
	for _, d := range domains {
		routes = append(routes, d+"=smtp:["+strings.Replace(hops[d], ":", "]:", 1))
	}
	routes = append(routes, fmt.Sprintf("sender.test=smtp:[127.0.0.1]:%d", keep.Port()))
	main := "transport_maps = inline:{" + strings.Join(routes, ", ") + "}\n" +
		"queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n" +
		"delay_warning_time = 1s\nmaximal_queue_lifetime = 3s\nbounce_queue_lifetime = 3s\n"
	p := oracle.StartPostfix(t, oracle.PostfixOptions{Main: main})
	ids := map[string]string{} // Postfix queue ID -> domain
	for _, d := range domains {
		s := p.Session(t)
		for _, cmd := range []string{"EHLO client.example", "MAIL FROM:<alice@sender.test>", "RCPT TO:<user@" + d + ">", "DATA"} {
			if r := s.Cmd(cmd); r.Code >= 400 {
				t.Fatalf("Postfix: %s: %s", cmd, r)
			}
		}
		r := s.Message("Subject: retry test\n\nbody\n")
		s.Close()
		_, id, ok := strings.Cut(r.String(), "queued as ")
		if r.Code != 250 || !ok {
			t.Fatalf("Postfix: end of data: %s", r)
		}
		ids[strings.TrimSpace(id)] = d
	}
	out := map[string]dsnFields{}
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < 2*len(domains) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		for _, m := range keep.all(func(m sinkMessage) bool { return m.From == "" }) {
			d, ok := ids[reportedID(m.Data)]
			kind := map[string]string{"Undelivered Mail Returned to Sender": "failure",
				"Delayed Mail (still being retried)": "delay"}[subjectOf(m.Data)]
			if !ok || kind == "" {
				continue
			}
			if _, seen := out[d+"/"+kind]; !seen {
				out[d+"/"+kind] = parseNotice(t, "Postfix's "+kind+" notice for "+d, []byte(m.Data))
			}
		}
	}
	if len(out) < 2*len(domains) {
		t.Fatalf("Postfix sent %d of the %d notices expected in 60 s: %v\n%s", len(out), 2*len(domains), slices.Sorted(maps.Keys(out)), p.Log())
	}
	return out
}
