#!/usr/bin/env python3
"""Drives postkit's POP3 server with Python's poplib (run by poplib_test.go).

usage: poplib_client.py SCENARIO HOST PORT TLSPORT USER PASSWORD MSGDIR

MSGDIR holds the messages as delivered (files 01, 02, ... in maildrop
order, LF line ends). Every check failure raises, so the exit status says
whether the server behaved.
"""
import base64
import os
import poplib
import ssl
import sys

scenario, host, port, tlsport, user, password, msgdir = sys.argv[1:8]
port, tlsport = int(port), int(tlsport)
# One test message has a 5,000-byte line (real mail breaks RFC 5322's 998).
poplib._MAXLINE = 10000

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

msgs = []
for name in sorted(os.listdir(msgdir)):
    with open(os.path.join(msgdir, name), "rb") as f:
        msgs.append(f.read())


def wire(m):
    """The message as POP3 sends it, CRLF line ends, unstuffed."""
    m = m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return m


def check(cond, what):
    if not cond:
        raise SystemExit("FAIL: " + what)


def check_maildrop(p, expect):
    count, size = p.stat()
    check(count == len(expect), "STAT count %d, want %d" % (count, len(expect)))
    check(size == sum(len(wire(m)) for m in expect), "STAT size %d" % size)
    resp, lines, _ = p.list()
    check(lines == [b"%d %d" % (i + 1, len(wire(m))) for i, m in enumerate(expect)], "LIST %r" % lines)
    resp, uidls, _ = p.uidl()
    check(len(uidls) == len(expect), "UIDL %r" % uidls)
    for i, m in enumerate(expect):
        resp, lines, octets = p.retr(i + 1)
        check(resp == b"+OK %d octets" % len(wire(m)), "RETR response %r" % resp)
        got = b"\r\n".join(lines) + b"\r\n"
        want = wire(m)
        if not want.endswith(b"\r\n"):
            want += b"\r\n"
        check(got == want, "RETR %d body %r, want %r" % (i + 1, got, want))
        resp, lines, _ = p.top(i + 1, 0)
        head = wire(m).split(b"\r\n\r\n", 1)[0].rstrip(b"\r\n")
        check(b"\r\n".join(lines).startswith(head), "TOP %d 0: %r" % (i + 1, lines))
    return [u.split()[1] for u in uidls]


if scenario == "stls":
    p = poplib.POP3(host, port, timeout=20)
    caps = p.capa()
    check("STLS" in caps and "UIDL" in caps and "TOP" in caps, "CAPA %r" % caps)
    p.stls(context=ctx)
    check("STLS" not in p.capa(), "STLS still offered after STLS")
    p.user(user)
    p.pass_(password)
    check_maildrop(p, msgs)
    p.dele(1)
    check(p.stat()[0] == len(msgs) - 1, "STAT after DELE")
    p.rset()
    check(p.stat()[0] == len(msgs), "STAT after RSET")
    p.dele(1)
    p.quit()
    # DELE + QUIT persisted; the other UIDLs did not change.
    p = poplib.POP3(host, port, timeout=20)
    p.stls(context=ctx)
    p.user(user)
    p.pass_(password)
    check_maildrop(p, msgs[1:])
    p.quit()
elif scenario == "authplain":
    p = poplib.POP3_SSL(host, tlsport, context=ctx, timeout=20)
    caps = p.capa()
    check("PLAIN" in caps.get("SASL", []), "CAPA SASL %r" % caps)
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    resp = p._shortcmd("AUTH PLAIN " + token)
    check(resp.startswith(b"+OK"), "AUTH PLAIN %r" % resp)
    before = check_maildrop(p, msgs)
    p.dele(len(msgs))
    p.quit()
    p = poplib.POP3_SSL(host, tlsport, context=ctx, timeout=20)
    p._shortcmd("AUTH PLAIN " + token)
    after = check_maildrop(p, msgs[:-1])
    check(after == before[:-1], "UIDLs changed: %r vs %r" % (after, before))
    p.quit()
elif scenario == "inuse":
    p1 = poplib.POP3(host, port, timeout=20)
    p1.user(user)
    p1.pass_(password)
    p2 = poplib.POP3(host, port, timeout=20)
    p2.user(user)
    try:
        p2.pass_(password)
        raise SystemExit("FAIL: second session logged in")
    except poplib.error_proto as e:
        check(b"[IN-USE]" in e.args[0], "second login error %r" % e.args[0])
    p1.quit()
    p2.user(user)
    p2.pass_(password)
    p2.quit()
elif scenario == "badpass":
    p = poplib.POP3(host, port, timeout=20)
    p.user(user)
    try:
        p.pass_(password + "x")
        raise SystemExit("FAIL: wrong password accepted")
    except poplib.error_proto as e:
        check(e.args[0] == b"-ERR [AUTH] Authentication failed.", "bad password error %r" % e.args[0])
    p.quit()
else:
    raise SystemExit("unknown scenario " + scenario)
print("ok")
