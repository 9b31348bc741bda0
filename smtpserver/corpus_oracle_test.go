package smtpserver_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/internal/oracle"
	"github.com/postkit-mail/postkit/restrictions"
	"github.com/postkit-mail/postkit/smtpserver"
	"github.com/postkit-mail/postkit/smtpserver/smtptest"
)

// TestOracleDialogues plays every scenario of restrictions/testdata/oracle
// and smtpserver/testdata/oracle against a private Postfix 3.7 smtpd and
// against postkit's smtpserver built from the same main.cf and tables,
// and compares every reply: code, enhanced code and text. Queue IDs are
// masked; nothing else is.
func TestOracleCorpus(t *testing.T) {
	oracle.Require(t, "postfix")
	var all []oracle.Scenario
	for _, dir := range []string{"../restrictions/testdata/oracle", "testdata/oracle"} {
		scs, err := oracle.LoadScenarios(dir)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, scs...)
	}
	total := 0
	var checked atomic.Int64
	// The scenarios run corpusParallel at a time whatever -parallel says:
	// each mostly waits for its Postfix to start, and -parallel defaults
	// to the number of CPUs.
	sem := make(chan struct{}, corpusParallel)
	var wg sync.WaitGroup
	for _, sc := range all {
		if len(sc.Dialogues) == 0 {
			continue // start-up-only scenarios are the restrictions test's
		}
		total += len(sc.Dialogues)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(sc.Name, func(t *testing.T) { corpusScenario(t, sc, &checked) })
		}()
	}
	wg.Wait()
	// The issue asks for at least 150 scenarios run against both servers.
	if total < 150 {
		t.Errorf("only %d dialogues in the corpus", total)
	}
	t.Cleanup(func() {
		t.Logf("%d scenario files, %d dialogues, %d replies compared", len(all), total, checked.Load())
	})
}

// corpusParallel is how many corpus scenarios run at once.
const corpusParallel = 4

// corpusScenario plays a scenario's dialogues on its own Postfix and on
// postkit.
func corpusScenario(t *testing.T, sc oracle.Scenario, checked *atomic.Int64) {
	pf := oracle.StartPostfix(t, oracle.PostfixOptions{Main: sc.Main, Files: sc.Files})
	addr := startPostkit(t, sc)
	for _, d := range sc.Dialogues {
		want := pf.RunDialogue(t, d)
		got := play(t, addr, d)
		checked.Add(int64(len(want.Steps)))
		compare(t, sc, d, want, got)
	}
}

// startPostkit writes the scenario's configuration as the harness writes
// Postfix's, builds a Server from it and serves it on a loopback port.
func startPostkit(t *testing.T, sc oracle.Scenario) string {
	t.Helper()
	dir := t.TempDir()
	if err := oracle.WriteConfigDir(dir, oracle.PostfixOptions{Main: sc.Main, Files: sc.Files}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := smtpserver.ConfigFrom(context.Background(), cfg, smtpserver.RoleSMTP, restrictions.Options{})
	if err != nil {
		t.Fatalf("%s: %v", sc.Name, err)
	}
	scfg.Handoff = &smtptest.Handoff{}
	srv, err := smtpserver.New(scfg)
	if err != nil {
		t.Fatalf("%s: %v", sc.Name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// play runs a dialogue against addr the way the harness runs it against
// Postfix: pipelined groups in one write, the harness's message after a
// 354, QUIT at the end.
func play(t *testing.T, addr string, d oracle.Dialogue) []smtptest.Reply {
	c := smtptest.Dial(t, addr)
	defer c.Close()
	out := []smtptest.Reply{c.Banner()}
	for i := 0; i < len(d.Commands); {
		j := i + 1
		for j < len(d.Commands) && d.Commands[j].Pipelined {
			j++
		}
		var texts []string
		for _, cmd := range d.Commands[i:j] {
			texts = append(texts, cmd.Text)
		}
		for k, r := range c.Pipeline(texts...) {
			out = append(out, r)
			if strings.EqualFold(texts[k], "DATA") && r.Code == 354 {
				out = append(out, c.Data(oracle.MessageBody))
			}
		}
		i = j
	}
	return out
}

var (
	queueID = regexp.MustCompile(`queued as [0-9A-Za-z]+`)
	// Postfix's EHLO AUTH line lists the Cyrus SASL plugins installed on
	// the host (it has no SASL backend here); postkit lists its Auth
	// backend's mechanisms, tested on their own.
	authLine = regexp.MustCompile(`(?m)^250-AUTH .*\n`)
)

func norm(s string) string {
	s = authLine.ReplaceAllString(s, "")
	return queueID.ReplaceAllString(s, "queued as QUEUEID")
}

func compare(t *testing.T, sc oracle.Scenario, d oracle.Dialogue, want oracle.Transcript, got []smtptest.Reply) {
	t.Helper()
	wants := []string{norm(want.Banner.String())}
	cmds := []string{"(banner)"}
	for _, st := range want.Steps {
		wants = append(wants, norm(st.Reply.String()))
		cmds = append(cmds, fmt.Sprintf("%s:%d %s", sc.Name, st.Cmd.Line, st.Cmd.Text))
	}
	for i := range wants {
		g := "(connection closed)"
		if i < len(got) {
			g = norm(got[i].String())
		}
		if g != wants[i] {
			t.Errorf("%s dialogue %s: %s\n\tpostfix: %s\n\tpostkit: %s", sc.Name, d.Name, cmds[i], wants[i], g)
		}
	}
}
