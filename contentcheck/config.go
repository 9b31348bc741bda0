package contentcheck

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/postkit-mail/postkit/config"
	"github.com/postkit-mail/postkit/maps"
)

// Postfix 3.7 defaults of the limits (postconf -d).
const (
	DefaultHeaderSizeLimit         = 102400
	DefaultLineLengthLimit         = 2048
	DefaultBodyChecksSizeLimit     = 51200
	DefaultMIMENestingLimit        = 100
	DefaultMIMEBoundaryLengthLimit = 2048
)

// Config is the content inspection of one cleanup service. The zero value
// inspects nothing and uses Postfix's default limits; it still splits
// headers and walks MIME. A Config is safe for concurrent use by many
// Walkers once built.
type Config struct {
	// HeaderChecks is header_checks: the primary message headers.
	// MIMEHeaderChecks is mime_header_checks: MIME headers (MIME-Version,
	// Content-*) wherever they are, and every header of a multipart body
	// part. NestedHeaderChecks is nested_header_checks: the non-MIME
	// headers of an attached message/rfc822. BodyChecks is body_checks.
	// Nil means no table. In main.cf the MIME and nested tables default to
	// $header_checks; here they do not: set them to the same Map to get
	// that (FromConfig does).
	HeaderChecks, MIMEHeaderChecks, NestedHeaderChecks, BodyChecks maps.Map

	// HeaderSizeLimit is header_size_limit: a logical header stops growing
	// once it holds this many bytes (the continuation lines after that are
	// dropped), and the header written out is cut to this size, at a line
	// boundary when that keeps 90% of it (cleanup_out_header). Neither
	// rejects the message. 0 means the default, 102400.
	HeaderSizeLimit int
	// LineLengthLimit is line_length_limit: longer lines are handled in
	// pieces of this many bytes (each body piece is a lookup key of its
	// own). 0 means the default, 2048.
	LineLengthLimit int
	// BodyChecksSizeLimit is body_checks_size_limit: in each MIME body
	// segment only lines that start before this byte offset are given to
	// body_checks. 0 means the default, 51200; a negative value means no
	// limit (Postfix's 0).
	BodyChecksSizeLimit int
	// MIMENestingLimit is mime_nesting_limit: multipart levels deeper than
	// this are not followed (and the message is rejected with "MIME nesting
	// exceeds safety limit" when any check or strict_* test is on). 0 means
	// the default, 100.
	MIMENestingLimit int
	// MIMEBoundaryLengthLimit is mime_boundary_length_limit: longer
	// boundary strings are truncated to this length before matching. 0
	// means the default, 2048.
	MIMEBoundaryLengthLimit int

	// DisableMIMEInputProcessing is disable_mime_input_processing:
	// everything after the primary headers is body.
	DisableMIMEInputProcessing bool
	// Strict7bitHeaders is strict_7bit_headers: reject 8-bit bytes in
	// message headers. Strict8bitMIMEBody is strict_8bitmime_body: reject
	// 8-bit bytes in a body part that is (or defaults to) 7bit. Strict8bitMIME
	// is strict_8bitmime: both. StrictMIMEEncodingDomain is
	// strict_mime_encoding_domain: reject a message/* or multipart/* part
	// with an encoding other than 7bit, 8bit or binary.
	Strict7bitHeaders, Strict8bitMIME, Strict8bitMIMEBody, StrictMIMEEncodingDomain bool

	// Logger receives the check log lines (info) and warnings; nil
	// discards them.
	Logger *slog.Logger
}

// FromConfig builds a Config from main.cf: header_checks,
// mime_header_checks, nested_header_checks, body_checks (each a list of
// tables, opened with maps.Default()), header_size_limit,
// line_length_limit, body_checks_size_limit, mime_nesting_limit,
// mime_boundary_length_limit, disable_mime_input_processing,
// strict_7bit_headers, strict_8bitmime, strict_8bitmime_body and
// strict_mime_encoding_domain. The Logger is left nil.
func FromConfig(ctx context.Context, cfg *config.Config) (*Config, error) {
	r := config.NewReader(cfg)
	c := &Config{
		HeaderSizeLimit:            r.Int("header_size_limit"),
		LineLengthLimit:            r.Int("line_length_limit"),
		BodyChecksSizeLimit:        r.Int("body_checks_size_limit"),
		MIMENestingLimit:           r.Int("mime_nesting_limit"),
		MIMEBoundaryLengthLimit:    r.Int("mime_boundary_length_limit"),
		DisableMIMEInputProcessing: r.Bool("disable_mime_input_processing"),
		Strict7bitHeaders:          r.Bool("strict_7bit_headers"),
		Strict8bitMIME:             r.Bool("strict_8bitmime"),
		Strict8bitMIMEBody:         r.Bool("strict_8bitmime_body"),
		StrictMIMEEncodingDomain:   r.Bool("strict_mime_encoding_domain"),
	}
	specs := map[string][]string{}
	for _, p := range []string{"header_checks", "mime_header_checks", "nested_header_checks", "body_checks"} {
		specs[p] = r.List(p)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("contentcheck: %w", err)
	}
	if c.BodyChecksSizeLimit == 0 {
		c.BodyChecksSizeLimit = -1
	}
	// One open table per spec, so that mime_header_checks = $header_checks
	// shares the header_checks tables.
	opened := map[string]maps.Map{}
	open := func(param string) (maps.Map, error) {
		var list maps.List
		for _, spec := range specs[param] {
			m, ok := opened[spec]
			if !ok {
				var err error
				m, err = maps.Default().Open(ctx, spec, maps.Options{})
				if err != nil {
					return nil, fmt.Errorf("contentcheck: %s: open %s: %w", param, spec, err)
				}
				opened[spec] = m
			}
			list = append(list, m)
		}
		switch len(list) {
		case 0:
			return nil, nil
		case 1:
			return list[0], nil
		}
		return listMap(list), nil
	}
	var err error
	if c.HeaderChecks, err = open("header_checks"); err != nil {
		return nil, err
	}
	if c.MIMEHeaderChecks, err = open("mime_header_checks"); err != nil {
		return nil, err
	}
	if c.NestedHeaderChecks, err = open("nested_header_checks"); err != nil {
		return nil, err
	}
	if c.BodyChecks, err = open("body_checks"); err != nil {
		return nil, err
	}
	return c, nil
}

// listMap searches several tables of one parameter, the first match
// winning (maps_find).
type listMap maps.List

func (l listMap) Lookup(ctx context.Context, key string) (string, bool, error) {
	r, ok, err := maps.List(l).Find(ctx, key)
	if err != nil || !ok {
		return "", false, err
	}
	return r.Value, true, nil
}

func (l listMap) Kind() maps.Kind { return maps.Pattern }

// limits returns the effective limits.
func (c *Config) limits() (hdr, line, body, nest, bound int) {
	hdr, line, body, nest, bound = c.HeaderSizeLimit, c.LineLengthLimit, c.BodyChecksSizeLimit, c.MIMENestingLimit, c.MIMEBoundaryLengthLimit
	if hdr <= 0 {
		hdr = DefaultHeaderSizeLimit
	}
	if line <= 0 {
		line = DefaultLineLengthLimit
	}
	if body == 0 {
		body = DefaultBodyChecksSizeLimit
	}
	if nest <= 0 {
		nest = DefaultMIMENestingLimit
	}
	if bound <= 0 {
		bound = DefaultMIMEBoundaryLengthLimit
	}
	return
}
