"""Tries one XMPP login and says how it went: a real client (slixmpp) for the
appliance tests.

    login.py HOST PORT JID            # password from $XMPP_PASSWORD
    login.py HOST PORT DOMAIN --anonymous

Prints `ok` and exits 0 when the session starts, prints `refused: REASON` and
exits 1 when the server refuses the login, exits 2 on anything else.
"""

import asyncio
import os
import ssl
import sys

import slixmpp


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, jid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    anonymous = "--anonymous" in sys.argv[4:]
    outcome = {}

    client = slixmpp.ClientXMPP(
        jid, "" if anonymous else os.environ.get("XMPP_PASSWORD", ""),
        sasl_mech="ANONYMOUS" if anonymous else None,
    )
    # Port 5222 speaks plain XMPP upgraded with STARTTLS; slixmpp would try
    # direct TLS first and fail on it.
    client.enable_direct_tls = False
    client.enable_starttls = True
    client.enable_plaintext = False
    # The appliance's certificate at this point is self-signed.
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE

    def finish(result):
        if "result" not in outcome:
            outcome["result"] = result
        client.disconnect()

    client.add_event_handler("session_start", lambda _: finish("ok"))
    client.add_event_handler("failed_all_auth", lambda _: finish("refused: authentication failed"))
    client.add_event_handler("no_auth", lambda _: finish("refused: no usable mechanism"))
    client.add_event_handler("connection_failed", lambda e: finish(f"error: {e}"))
    # A server that offers no usable mechanism may just close the stream.
    client.add_event_handler(
        "disconnected", lambda _: finish("refused: stream closed before a session started"))

    client.connect(host=host, port=port)
    loop = asyncio.get_event_loop()
    deadline = loop.time() + 30
    while "result" not in outcome and loop.time() < deadline:
        loop.run_until_complete(asyncio.sleep(0.2))
    result = outcome.get("result", "error: timed out")
    print(result)
    if result == "ok":
        return 0
    return 1 if result.startswith("refused") else 2


if __name__ == "__main__":
    sys.exit(main())
