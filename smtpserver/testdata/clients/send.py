#!/usr/bin/env python3
"""Send one message with Python's smtplib, as a third-party client would.

Usage: send.py HOST PORT USER PASSWORD FROM TO [TO...]

EHLO, STARTTLS with a context that does not verify the (self-signed)
certificate, EHLO again, AUTH with the mechanism smtplib prefers among those
offered, then one message to every TO. Prints each step's reply so the Go
test can check them; any SMTP error ends the script with a traceback and a
non-zero exit status.
"""
import smtplib
import ssl
import sys


def main():
    host, port, user, password, sender = sys.argv[1:6]
    rcpts = sys.argv[6:]
    msg = (
        "From: <%s>\r\n"
        "To: %s\r\n"
        "Subject: smtplib test\r\n"
        "\r\n"
        "hello from smtplib\r\n"
        ".leading dot line\r\n" % (sender, ", ".join("<%s>" % r for r in rcpts))
    )
    with smtplib.SMTP(host, int(port), local_hostname="py.client.example", timeout=10) as s:
        code, _ = s.ehlo()
        print("ehlo", code, "starttls" if s.has_extn("starttls") else "no-starttls",
              "auth" if s.has_extn("auth") else "no-auth")
        code, text = s.starttls(context=ssl._create_unverified_context())
        print("starttls", code, text.decode())
        code, _ = s.ehlo()
        print("ehlo", code, "auth=" + s.esmtp_features.get("auth", "").strip())
        code, text = s.login(user, password)
        print("login", code, text.decode())
        refused = s.sendmail(sender, rcpts, msg)
        print("refused", sorted(refused))
    print("done")


if __name__ == "__main__":
    main()
