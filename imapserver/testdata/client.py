#!/usr/bin/env python3
"""Drive postkit's IMAP server with Python's imaplib, as a mail client would.

usage: client.py HOST PORT USER PASSWORD SCENARIO
Prints one "KEY VALUE" line per observation; the Go test checks them.
"""
import imaplib
import re
import sys

host, port, user, password, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def out(key, value):
    print(key, value, flush=True)


def ok(res):
    typ, data = res
    if typ != 'OK':
        raise SystemExit('command failed: %r %r' % (typ, data))
    return data


M = imaplib.IMAP4(host, port)
if scenario == 'badlogin':
    try:
        M.login(user, password + 'x')
        out('login', 'accepted')
    except imaplib.IMAP4.error as e:
        out('login', 'refused ' + str(e))
    raise SystemExit(0)

if scenario == 'authplain':
    ok(M.authenticate('PLAIN', lambda _: ('\0%s\0%s' % (user, password)).encode()))
else:
    ok(M.login(user, password))
out('caps', ' '.join(sorted(M.capabilities)))

if scenario in ('full', 'authplain'):
    for line in ok(M.list()):
        out('list', line.decode())
    ok(M.create('Work'))
    ok(M.create('Work.Projects'))
    ok(M.create('Caf&AOk-'))
    ok(M.subscribe('Work'))
    for line in ok(M.lsub()):
        out('lsub', line.decode())
    for i, subj in enumerate(['first', 'second', 'third']):
        msg = ('From: Alice <alice@example.org>\r\nTo: bob@example.org\r\n'
               'Subject: %s\r\nDate: Mon, 2 Mar 2026 10:0%d:00 +0100\r\n'
               'Message-ID: <m%d@example.org>\r\n\r\nbody number %d\r\nline two\r\n' % (subj, i, i, i))
        typ, data = M.append('INBOX', '(\\Flagged)' if i == 1 else None, None, msg.encode())
        out('append', data[0].decode())
    typ, data = M.select('INBOX')
    out('exists', data[0].decode())
    for line in ok(M.fetch('1:*', '(UID FLAGS RFC822.SIZE ENVELOPE)')):
        out('fetch', line.decode() if isinstance(line, bytes) else line[0].decode())
    data = ok(M.fetch('2', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT] BODY[1]<0.4>)'))
    for part in data:
        if isinstance(part, tuple):
            out('section', repr(part[1]))
    data = ok(M.fetch('1', '(BODY[])'))
    out('rfc822', repr(data[0][1]))
    out('seenafter', ok(M.fetch('1', '(FLAGS)'))[0].decode())
    out('bodystructure', ok(M.fetch('3', '(BODYSTRUCTURE)'))[0].decode())
    ok(M.store('3', '+FLAGS', '(\\Answered $Important)'))
    out('flags3', ok(M.fetch('3', '(FLAGS)'))[0].decode())
    out('search_flagged', ok(M.search(None, 'FLAGGED'))[0].decode())
    out('search_unseen', ok(M.search(None, 'UNSEEN'))[0].decode())
    out('search_subject', ok(M.search(None, 'SUBJECT', 'third'))[0].decode())
    out('search_body', ok(M.search(None, 'BODY', '"NUMBER 1"'))[0].decode())
    out('search_or', ok(M.search(None, 'OR', 'SUBJECT', 'first', 'KEYWORD', '$Important'))[0].decode())
    out('search_uid', ok(M.uid('SEARCH', None, 'UID', '2:*'))[0].decode())
    out('search_sent', ok(M.search(None, 'SENTSINCE', '2-Mar-2026', 'NOT', 'SENTBEFORE', '2-Mar-2026'))[0].decode())
    out('search_charset', ok(M.search('UTF-8', 'TEXT', 'alice'))[0].decode())
    typ, data = M.copy('1:2', 'Work')
    out('copy', '%s %s' % (typ, M.untagged_responses.get('COPYUID', data)))
    out('copyuid', repr(M.response('COPYUID')))
    typ, data = M._simple_command('MOVE', '3', 'Work.Projects')
    out('move', typ)
    out('status_work', ok(M.status('Work', '(MESSAGES UIDNEXT UNSEEN)'))[0].decode())
    out('status_proj', ok(M.status('Work.Projects', '(MESSAGES)'))[0].decode())
    ok(M.store('1', '+FLAGS', '(\\Deleted)'))
    typ, data = M.expunge()
    out('expunge', repr(data))
    typ, data = M.select('INBOX')
    out('exists_after', data[0].decode())
    ok(M.rename('Work', 'Archive'))
    for line in ok(M.list('""', '*')):
        out('list2', line.decode())
    typ, data = M.create('bad/name')
    out('create_bad', typ)
    typ, data = M.select('Nonexistent')
    out('select_missing', typ)

if scenario == 'idle':
    typ, data = M.select('INBOX')
    out('exists', data[0].decode())
    tag = M._new_tag().decode()
    M.send(('%s IDLE\r\n' % tag).encode())
    line = M.readline().decode().strip()
    out('idle_cont', line)
    out('IDLE-WAITING', 'now')
    line = M.readline().decode().strip()
    out('idle_update', line)
    M.send(b'DONE\r\n')
    while True:
        line = M.readline().decode().strip()
        if line.startswith(tag):
            out('idle_done', line)
            break
    data = ok(M.fetch('*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))
    out('idle_subject', repr(data[0][1]))

if scenario == 'persist1':
    for s in ('one', 'two'):
        M.append('INBOX', None, None, ('Subject: %s\r\n\r\nx\r\n' % s).encode())
    ok(M.select('INBOX'))
    ok(M.store('2', '+FLAGS', '(\\Seen Custom1)'))
    out('uids', ok(M.fetch('1:*', '(UID FLAGS)')))
    out('uidvalidity', ok(M.status('INBOX', '(UIDVALIDITY)'))[0].decode())

if scenario == 'persist2':
    ok(M.select('INBOX'))
    out('uids', ok(M.fetch('1:*', '(UID FLAGS)')))
    out('uidvalidity', ok(M.status('INBOX', '(UIDVALIDITY)'))[0].decode())

M.logout()
out('done', 'ok')
