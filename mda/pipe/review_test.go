package pipe_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postkit-mail/postkit/queue"
)

// A queue file that cannot be read to the end must not be reported
// delivered even though the command, given what could be read, exits 0:
// Postfix's pipe(8) defers ("error reading message").
func TestQueueReadErrorDefers(t *testing.T) {
	dir := outDir(t)
	a := mustAgent(t, "", "user=nobody", "argv=/bin/dd", "of="+filepath.Join(dir, "msg"), "status=none")
	d := request("s@x", content, "u@example.net")
	d.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: t\r\n\r\nhalf"), errReader{})), nil
	}
	r := a.Deliver(context.Background(), d)[0]
	if r.Outcome != queue.Delayed || r.DSN != "4.3.0" {
		t.Errorf("%+v, want deferred with 4.3.0", r)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }
