#!/usr/bin/python3
"""Prints what Python's email module sees in a delivery status notice:
the MIME tree, the top-level headers and every delivery-status field, as
JSON. The Go tests run it on postkit's notices and on Postfix's and
compare the results. Exits 1 when the message is not a valid RFC 3464
multipart/report or the parser reports defects."""
import email, email.policy, json, sys

def fields(text):
    """Splits a delivery-status body into its header blocks (RFC 3464 2.1)."""
    blocks, cur, last = [], [], None
    for line in text.replace('\r\n', '\n').split('\n'):
        if line == '':
            if cur:
                blocks.append(cur)
            cur, last = [], None
            continue
        if line[0] in ' \t' and last is not None:
            cur[last][1] += ' ' + line.strip()
            continue
        name, _, value = line.partition(':')
        cur.append([name, value.strip()])
        last = len(cur) - 1
    if cur:
        blocks.append(cur)
    return blocks

def main():
    data = open(sys.argv[1], 'rb').read()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out = {'defects': [], 'headers': [], 'tree': [], 'dsn': None}
    for k in ('From', 'To', 'Subject', 'Auto-Submitted', 'MIME-Version', 'Content-Transfer-Encoding'):
        out['headers'].append([k, str(msg.get(k))])
    if msg.get_content_type() != 'multipart/report':
        print('not multipart/report: ' + msg.get_content_type(), file=sys.stderr)
        sys.exit(1)
    if msg.get_param('report-type') != 'delivery-status':
        print('report-type is not delivery-status', file=sys.stderr)
        sys.exit(1)
    parts = msg.get_payload()
    if len(parts) != 3:
        print('want 3 parts, have %d' % len(parts), file=sys.stderr)
        sys.exit(1)
    def walk(p, depth):
        out['tree'].append('  ' * depth + p.get_content_type())
        out['defects'] += [type(d).__name__ for d in p.defects]
        if p.is_multipart():
            for s in p.get_payload():
                walk(s, depth + 1)
    walk(msg, 0)
    ds = parts[1]
    if ds.get_content_type() not in ('message/delivery-status', 'message/global-delivery-status'):
        print('second part is ' + ds.get_content_type(), file=sys.stderr)
        sys.exit(1)
    raw = ds.as_bytes().split(b'\n\n', 1)[1] if ds.get_content_type() == 'message/global-delivery-status' else None
    if raw is None:
        # Python parses message/delivery-status into one message per block.
        out['dsn'] = [[[k, str(v)] for k, v in b.items()] for b in ds.get_payload()]
    else:
        out['dsn'] = fields(raw.decode('utf-8', 'replace'))
    if len(out['dsn']) < 2:
        print('delivery-status has no recipient block', file=sys.stderr)
        sys.exit(1)
    third = parts[2].get_content_type()
    if third not in ('message/rfc822', 'text/rfc822-headers', 'message/global', 'message/global-headers'):
        print('third part is ' + third, file=sys.stderr)
        sys.exit(1)
    out['text'] = parts[0].get_content()
    print(json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True))
    if out['defects']:
        sys.exit(1)

main()
