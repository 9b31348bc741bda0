package pipe_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/queue"
)

// benchContent is a typical 4 KB message.
var benchContent = "From: a@x.test\r\nTo: b@y.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("a line of text that is exactly sixty-four bytes long ..........\r\n", 64)

// BenchmarkPipeCat delivers one message per iteration to /bin/cat
// through the agent (argv expansion, flags, output capture, result
// mapping). Compare with BenchmarkExecCat, the bare fork/exec of the
// same command with the same input, measured in the same run: the
// ratio is the agent's overhead.
func BenchmarkPipeCat(b *testing.B) {
	a := mustAgent(b, "", "flags=R", "user=nobody", "argv=/bin/cat")
	d := request("s@x.test", benchContent, "u@example.net")
	b.SetBytes(int64(len(benchContent)))
	b.ResetTimer()
	for b.Loop() {
		if r := a.Deliver(context.Background(), d)[0]; r.Outcome != queue.Delivered {
			b.Fatalf("%+v", r)
		}
	}
}

// BenchmarkExecCat is the baseline: os/exec running /bin/cat with the
// message on standard input and its output collected.
func BenchmarkExecCat(b *testing.B) {
	b.SetBytes(int64(len(benchContent)))
	for b.Loop() {
		var out bytes.Buffer
		cmd := exec.Command("/bin/cat")
		cmd.Stdin = strings.NewReader(benchContent)
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
