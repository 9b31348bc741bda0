package control

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzParseRequest: any bytes give a request or an error, never a panic;
// a request that parses encodes to bytes that parse to the same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"mailq\n", "mailq-json\n", "flush\n", "flush-site example.org\n", "deliver 4jc18t6WRMz1SDCY\n",
		"postcat 4jc18t6WRMz1SDCY ehb\n", "postcat X -\n", "delete\nALL\n\n", "hold deferred incoming\nA1\nB2\n\n",
		"release hold\n\n", "requeue\n4jc18t6WRMz1SDCY\nALL\n\n", "delete\nA\n", "bogus\n", "mailq", "\n",
		"flush-site  x\n", "postcat a q\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, errProtocol) && err != io.ErrUnexpectedEOF {
				t.Fatalf("error %v is neither a protocol error nor EOF", err)
			}
			return
		}
		var b bytes.Buffer
		if err := req.Encode(&b); err != nil {
			// Only IDs the encoder refuses to send (empty ones cannot
			// occur: an empty line ends the list).
			t.Fatalf("encoding %+v: %v", req, err)
		}
		back, err := ParseRequest(&b)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(req, back) {
			t.Fatalf("round trip:\n%+v\n%+v", req, back)
		}
	})
}
