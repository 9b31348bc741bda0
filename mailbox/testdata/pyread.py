#!/usr/bin/env python3
"""Read a Maildir or mbox with Python's mailbox module and print what it saw
as JSON, for postkit's Go tests to compare with what they wrote.

usage: pyread.py maildir DIR | mbox FILE
Maildir: [{"key", "subdir", "flags", "info", "data" (base64)}], sorted by key.
mbox:    [{"from", "data" (base64)}] in file order ("from" is the From_ line
         after "From "; data is the message as Python returns it, which keeps
         the ">From " quoting).
"""
import base64, json, mailbox, sys

kind, path = sys.argv[1], sys.argv[2]
out = []
if kind == "maildir":
    md = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(md.keys()):
        msg = md.get_message(key)
        out.append({
            "key": key,
            "subdir": msg.get_subdir(),
            "flags": msg.get_flags(),
            "info": msg.get_info(),
            "data": base64.b64encode(md.get_bytes(key)).decode(),
        })
    # Python's own listing must agree with the folder list.
    folders = sorted(md.list_folders())
    print(json.dumps({"messages": out, "folders": folders}))
elif kind == "mbox":
    mb = mailbox.mbox(path, create=False)
    for key in mb.keys():
        msg = mb.get_message(key)
        out.append({
            "from": msg.get_from(),
            "data": base64.b64encode(mb.get_bytes(key)).decode(),
        })
    print(json.dumps({"messages": out}))
else:
    sys.exit("usage: pyread.py maildir DIR | mbox FILE")
