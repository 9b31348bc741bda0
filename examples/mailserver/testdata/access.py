"""Reads the mailserver's mail with Python's imaplib and poplib.

Run by access_test.go:

  access.py MODE HOST:PORT USER PASSWORD CAFILE OUTDIR [ARG]

MODE is one of
  imaps       IMAPS: UID FETCH BODY.PEEK[] of every INBOX message, each
              written to OUTDIR/imaps-UID
  imap-tls    the same over IMAP with STARTTLS, to OUTDIR/imap-tls-UID
  idle        IMAPS: SELECT, IDLE; prints "idling" once the server
              accepted IDLE, then waits for an untagged EXISTS and prints
              "exists N"; ends the IDLE with DONE
  pop3s       POP3S: RETR of every message, each written (CRLF line ends
              restored, byte-stuffing undone by poplib) to OUTDIR/pop3s-N;
              UIDLs printed as "uidl N UIDL"
  pop3-stls   the same over POP3 with STLS, to OUTDIR/pop3-stls-N
  pop3-dele   POP3S: DELE of the message whose text holds ARG, then QUIT
  pop3-drop   POP3S: DELE of the message whose text holds ARG, then the
              connection is closed without QUIT
Failures raise (exit status 1 with a traceback).
"""

import imaplib
import os
import poplib
import socket
import ssl
import sys

mode, addr, user, password, cafile, outdir = sys.argv[1:7]
arg = sys.argv[7] if len(sys.argv) > 7 else ""
host, port = addr.rsplit(":", 1)
port = int(port)
# The self-signed certificate names localhost and 127.0.0.1.
ctx = ssl.create_default_context(cafile=cafile)


def save(name, data):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(data)


def imap_fetch_all(m, prefix):
    m.login(user, password)
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    n = 0
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        uid = head.split(b"UID ")[1].split()[0].decode()
        save("%s-%s" % (prefix, uid), body)
        n += 1
    print("fetched", n)
    m.logout()


def pop3_find(p, needle):
    count, _ = p.stat()
    for i in range(1, count + 1):
        _, lines, _ = p.retr(i)
        if needle.encode() in b"\r\n".join(lines):
            return i
    raise SystemExit("no message holds %r" % needle)


if mode == "imaps":
    imap_fetch_all(imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20), "imaps")
elif mode == "imap-tls":
    m = imaplib.IMAP4(host, port, timeout=20)
    assert "LOGINDISABLED" in m.capabilities, m.capabilities
    m.starttls(ssl_context=ctx)
    assert "LOGINDISABLED" not in m.capabilities, m.capabilities
    imap_fetch_all(m, "imap-tls")
elif mode == "idle":
    m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
    m.login(user, password)
    typ, data = m.select("INBOX")
    assert typ == "OK", typ
    before = int(data[0])
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    assert line.startswith(b"+"), line
    print("idling", before, flush=True)
    # No command is sent from here on: only the server can tell of the
    # new message.
    while True:
        line = m.readline()
        if not line:
            raise SystemExit("connection closed during IDLE")
        words = line.split()
        if len(words) == 3 and words[0] == b"*" and words[2].upper() == b"EXISTS" and int(words[1]) > before:
            print("exists", int(words[1]), flush=True)
            break
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            assert line.split()[1] == b"OK", line
            break
    m.logout()
elif mode in ("pop3s", "pop3-stls"):
    if mode == "pop3s":
        p = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    else:
        p = poplib.POP3(host, port, timeout=20)
        assert "STLS" in p.capa(), p.capa()
        p.stls(context=ctx)
    p.user(user)
    p.pass_(password)
    count, _ = p.stat()
    for i in range(1, count + 1):
        _, lines, _ = p.retr(i)
        save("%s-%d" % (mode, i), b"".join(l + b"\r\n" for l in lines))
    for entry in p.uidl()[1]:
        print("uidl", entry.decode())
    p.quit()
elif mode in ("pop3-dele", "pop3-drop"):
    p = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    p.user(user)
    p.pass_(password)
    i = pop3_find(p, arg)
    p.dele(i)
    print("deleted", i)
    if mode == "pop3-dele":
        print(p.quit().decode())
    else:
        p.sock.shutdown(socket.SHUT_RDWR)
        p.sock.close()
else:
    raise SystemExit("unknown mode " + mode)
