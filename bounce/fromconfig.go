package bounce

import (
	"fmt"

	"github.com/postkit-mail/postkit/config"
)

// FromConfig builds Settings from main.cf: myhostname, myorigin,
// mail_name, double_bounce_sender, notify_classes,
// bounce_notice_recipient, 2bounce_notice_recipient,
// delay_notice_recipient, error_notice_recipient, bounce_size_limit,
// maximal_queue_lifetime, delay_warning_time, smtputf8_enable and
// bounce_template_file (read now, so a bad file is reported at start).
// Template text may use any other parameter of c.
func FromConfig(c *config.Config) (*Settings, error) {
	r := config.NewReader(c)
	s := &Settings{
		Hostname:                 r.Str("myhostname"),
		Origin:                   r.Str("myorigin"),
		MailName:                 r.Str("mail_name"),
		DoubleBounceSender:       r.Str("double_bounce_sender"),
		NotifyClasses:            r.List("notify_classes"),
		BounceNoticeRecipient:    r.Str("bounce_notice_recipient"),
		TwoBounceNoticeRecipient: r.Str("2bounce_notice_recipient"),
		DelayNoticeRecipient:     r.Str("delay_notice_recipient"),
		ErrorNoticeRecipient:     r.Str("error_notice_recipient"),
		BounceSizeLimit:          int64(r.Int("bounce_size_limit")),
		MaximalQueueLifetime:     r.Duration("maximal_queue_lifetime"),
		DelayWarningTime:         r.Duration("delay_warning_time"),
		SMTPUTF8Enable:           r.Bool("smtputf8_enable"),
	}
	file := r.Str("bounce_template_file")
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("bounce: %w", err)
	}
	s.Params = func(name string) (string, bool) {
		v, ok, err := c.Lookup(name)
		if err != nil {
			return "", false
		}
		return v, ok
	}
	if file != "" {
		t, err := LoadTemplates(file)
		if err != nil {
			return nil, err
		}
		s.Templates = t
	}
	// Expand each text once, so an undefined $name is found at start
	// rather than when mail bounces.
	tm := s.templates()
	for _, t := range []*Template{&tm.Failure, &tm.Delay, &tm.Success, &tm.Verify} {
		if _, err := s.ExpandText(t); err != nil {
			return nil, fmt.Errorf("%w (bounce_template_file %s)", err, file)
		}
	}
	return s, nil
}
