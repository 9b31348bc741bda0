package milter_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// script is a test milter: each stage answers what its field says (nil =
// continue) and everything the milter is sent is recorded in seen.
type script struct {
	gomilter.NoOpMilter
	connect, helo, mail, data, eoh, body *gomilter.Response
	rcpt                                 func(rcpt string) *gomilter.Response
	header                               func(name, value string) *gomilter.Response
	eom                                  func(m gomilter.Modifier) (*gomilter.Response, error)
	delay                                time.Duration // before answering end of message
	seen                                 *seen
}

// seen is what a test milter received.
type seen struct {
	mu       sync.Mutex
	host     string
	family   string
	port     uint16
	addr     string
	helo     string
	from     string
	fromArgs string
	rcpts    []string
	rcptArgs []string
	headers  []string // "Name: value"
	body     []byte
	macros   map[string]string // "stage name" -> value
	stages   []string
}

func (s *seen) stage(name string, m gomilter.Modifier, macros ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stages = append(s.stages, name)
	if s.macros == nil {
		s.macros = map[string]string{}
	}
	for _, k := range macros {
		if v, ok := m.GetEx(k); ok {
			s.macros[name+" "+k] = v
		}
	}
}

var allMacros = []string{"j", "{daemon_name}", "{daemon_addr}", "v", "_", "i", "{auth_type}", "{auth_authen}",
	"{mail_addr}", "{mail_host}", "{mail_mailer}", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}", "{tls_version}", "{client_addr}"}

func or(r *gomilter.Response) (*gomilter.Response, error) {
	if r == nil {
		return gomilter.RespContinue, nil
	}
	return r, nil
}

func (s *script) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("connect", m, allMacros...)
	s.seen.mu.Lock()
	s.seen.host, s.seen.family, s.seen.port, s.seen.addr = host, family, port, addr
	s.seen.mu.Unlock()
	return or(s.connect)
}

func (s *script) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("helo", m, allMacros...)
	s.seen.mu.Lock()
	s.seen.helo = name
	s.seen.mu.Unlock()
	return or(s.helo)
}

func (s *script) MailFrom(from, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("mail", m, allMacros...)
	s.seen.mu.Lock()
	s.seen.from, s.seen.fromArgs = from, args
	s.seen.mu.Unlock()
	return or(s.mail)
}

func (s *script) RcptTo(rcpt, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("rcpt", m, allMacros...)
	s.seen.mu.Lock()
	s.seen.rcpts = append(s.seen.rcpts, rcpt)
	s.seen.rcptArgs = append(s.seen.rcptArgs, args)
	s.seen.mu.Unlock()
	if s.rcpt != nil {
		if r := s.rcpt(rcpt); r != nil {
			return r, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (s *script) Data(m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("data", m, allMacros...)
	return or(s.data)
}

func (s *script) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.mu.Lock()
	s.seen.headers = append(s.seen.headers, name+": "+value)
	s.seen.mu.Unlock()
	if s.header != nil {
		if r := s.header(name, value); r != nil {
			return r, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (s *script) Headers(m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("eoh", m, allMacros...)
	return or(s.eoh)
}

func (s *script) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.mu.Lock()
	s.seen.body = append(s.seen.body, chunk...)
	s.seen.mu.Unlock()
	return or(s.body)
}

func (s *script) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	s.seen.stage("eom", m, allMacros...)
	if s.delay > 0 {
		// Progress keeps the MTA waiting past its command timeout.
		for end := time.Now().Add(s.delay); time.Now().Before(end); {
			time.Sleep(s.delay / 10)
			if err := m.Progress(); err != nil {
				return nil, err
			}
		}
	}
	if s.eom != nil {
		return s.eom(m)
	}
	return gomilter.RespAccept, nil
}

// startMilter runs a go-milter server on a loopback port; every
// connection gets the script make returns. It returns "inet:127.0.0.1:PORT".
func startMilter(t testing.TB, make func() *script, opts ...gomilter.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]gomilter.Option{
		gomilter.WithMilter(func() gomilter.Milter { return make() }),
		gomilter.WithActions(gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptAddRcpt |
			gomilter.OptRemoveRcpt | gomilter.OptChangeHeader | gomilter.OptQuarantine |
			gomilter.OptChangeFrom | gomilter.OptAddRcptWithArgs),
	}, opts...)
	srv := gomilter.NewServer(opts...)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String()
}

func mustResp(r *gomilter.Response, err error) *gomilter.Response {
	if err != nil {
		panic(err)
	}
	return r
}

func init() {
	// The library logs through log.Print; keep test output clean.
	gomilter.LogWarning = func(format string, v ...any) {}
}

func lines(s ...string) string { return strings.Join(s, "\r\n") + "\r\n" }

var _ = io.EOF
