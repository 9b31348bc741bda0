package bounce

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// goMessageSummary reads a notice with go-message and describes what it
// sees: the MIME tree with each part's type and description, and the
// delivery-status fields. It fails when the notice is not a
// multipart/report of three parts with a delivery-status second part.
func goMessageSummary(data []byte) (string, error) {
	e, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) {
		return "", fmt.Errorf("go-message: read: %w", err)
	}
	t, params, err := e.Header.ContentType()
	if err != nil {
		return "", fmt.Errorf("go-message: Content-Type: %w", err)
	}
	if t != "multipart/report" || params["report-type"] != "delivery-status" {
		return "", fmt.Errorf("go-message: top type %s %v", t, params)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s report-type=%s\n", t, params["report-type"])
	mr := e.MultipartReader()
	n := 0
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) {
			return "", fmt.Errorf("go-message: part %d: %w", n+1, err)
		}
		n++
		pt, _, _ := p.Header.ContentType()
		fmt.Fprintf(&b, "part %d: %s (%s)\n", n, pt, p.Header.Get("Content-Description"))
		body, err := io.ReadAll(p.Body)
		if err != nil {
			return "", fmt.Errorf("go-message: part %d body: %w", n, err)
		}
		switch n {
		case 2:
			if pt != "message/delivery-status" && pt != "message/global-delivery-status" {
				return "", fmt.Errorf("go-message: second part is %s", pt)
			}
			// RFC 3464 2.1: header blocks separated by blank lines.
			r := bufio.NewReader(bytes.NewReader(body))
			blocks := 0
			for {
				h, err := textproto.ReadHeader(r)
				if err != nil {
					return "", fmt.Errorf("go-message: delivery-status block %d: %w", blocks+1, err)
				}
				if h.Len() == 0 {
					break
				}
				blocks++
				fields := h.Fields()
				for fields.Next() {
					v := fields.Value()
					fmt.Fprintf(&b, "  %s: %s\n", fields.Key(), v)
				}
				b.WriteString("  --\n")
			}
			if blocks < 2 {
				return "", fmt.Errorf("go-message: delivery-status has %d blocks", blocks)
			}
		case 3:
			fmt.Fprintf(&b, "  %d bytes\n", len(body))
		}
	}
	if n != 3 {
		return "", fmt.Errorf("go-message: %d parts, want 3", n)
	}
	return b.String(), nil
}
