// Package maildate formats times the way Postfix writes them into
// Received: and Date: headers (its mail_date()): RFC 5322 with the day of
// the month padded with a space, the numeric offset and the zone name in
// parentheses, "Mon,  9 Dec 1996 05:38:26 -0500 (EST)". One definition,
// because the SMTP server, cleanup and pickup must all agree with Postfix.
package maildate

import "time"

// Format returns t in Postfix's header date format, in t's location.
func Format(t time.Time) string {
	return t.Format("Mon, _2 Jan 2006 15:04:05 -0700 (MST)")
}
