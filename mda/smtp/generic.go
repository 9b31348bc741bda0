package smtp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
)

// maxGenericHeader bounds the header section that smtp_generic_maps
// rewrites; a longer one is rewritten up to the limit and the rest passes
// unchanged (queued mail never has one: cleanup limits header_size_limit).
const maxGenericHeader = 1 << 20

// genericHeaders applies smtp_generic_maps to the sender- and
// recipient-type headers of the message's top-level header section, as
// Postfix's SMTP client does (smtp_proto.c with smtp_generic_maps), and
// returns the message with the rewritten header.
func (a *Agent) genericHeaders(ctx context.Context, r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var out bytes.Buffer
	var cur []string
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		text := strings.Join(cur, "")
		cur = cur[:0]
		name, value, ok := strings.Cut(text, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			out.WriteString(text)
			return nil
		}
		nv, changed, err := a.cfg.Generic.GenericHeader(ctx, name, value)
		if err != nil {
			return err
		}
		if changed {
			out.WriteString(name + ":" + nv)
		} else {
			out.WriteString(text)
		}
		return nil
	}
	for out.Len() < maxGenericHeader {
		line, err := br.ReadString('\n')
		if line == "\r\n" || line == "\n" {
			if ferr := flush(); ferr != nil {
				return nil, ferr
			}
			out.WriteString(line)
			break
		}
		if line != "" {
			if (line[0] == ' ' || line[0] == '\t') && len(cur) > 0 {
				cur = append(cur, line)
			} else {
				if ferr := flush(); ferr != nil {
					return nil, ferr
				}
				cur = append(cur, line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the message header: %w", err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return io.MultiReader(&out, br), nil
}
