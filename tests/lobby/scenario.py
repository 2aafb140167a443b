#!/usr/bin/env python3
"""The private counter, played with real XMPP clients (slixmpp) against a
prosody that runs mod_balcao_private_rooms on its conference component.

One staff member (an account on DOMAIN) and two anonymous guests (on
guest.DOMAIN) go through the story the module must guarantee: a guest who
comes before staff waits and does not create the room; staff open it and own
it; two guests who knock are both refused and listed in order of arrival;
staff admit one, and only that one gets in; members-only cannot be switched
off; a guest who leaves loses the membership; Jitsi's focus account
(focus@auth.DOMAIN) still creates and configures rooms.

Usage (tests/lobby_xmpp.rs runs it):
    BALCAO_STAFF_PASSWORD=... BALCAO_FOCUS_PASSWORD=... \
        scenario.py --port PORT --domain DOMAIN --staff USER

With --appliance (tests/image_appliance.rs, through an SSH tunnel to a booted
appliance's port 5222) the clients use STARTTLS, as Jitsi's own do, without
checking the certificate (the test reaches it as 127.0.0.1), and the step
that needs the test-only plugin is left out: the appliance does not have it.
There, as in Jitsi, only the focus account creates rooms (Jitsi's prosody
configuration says restrict_room_creation = true): when a staff member
starts a meeting, jicofo creates the room and the staff member joins it, so
the focus account opens sala1 just before staff join.

Prints one line per checked step and exits 1 on the first failed check.
"""

import argparse
import asyncio
import logging
import os
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
LOBBY = "urn:balcao:lobby"
OPEN_ROOM = "urn:balcao:test:open-room"  # tests/lobby/plugins/mod_balcao_test_open_room.lua
STEP_TIMEOUT = 10


class Failed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failed(what)
    print(f"ok: {what}", flush=True)


class Client(slixmpp.ClientXMPP):
    """An XMPP client that can try to enter a room and say what happened."""

    def __init__(self, jid, password, label, appliance=False):
        if appliance:
            super().__init__(jid, password)
            # Port 5222 speaks plain XMPP upgraded with STARTTLS.
            self.enable_direct_tls = False
            self.enable_starttls = True
            self.enable_plaintext = False
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        else:
            # Loopback only: the test prosody has no certificate, so SCRAM
            # runs without TLS (slixmpp refuses that unless told).
            super().__init__(jid, password,
                             plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.label = label
        self.started = asyncio.get_event_loop().create_future()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0045")
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.waiters = []
        self.add_event_handler("presence", self._on_presence)

    async def _on_start(self, _event):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed_auth(self, _event):
        if not self.started.done():
            self.started.set_exception(Failed(f"{self.label} could not log in"))

    def _on_presence(self, pres):
        for match, future in list(self.waiters):
            if not future.done() and match(pres):
                future.set_result(pres)

    def wait_presence(self, match):
        future = asyncio.get_event_loop().create_future()
        self.waiters.append((match, future))
        return future

    async def attempt_join(self, room, nick):
        """'joined' with the own presence's affiliation, or the error condition."""
        occupant = f"{room}/{nick}"
        future = self.wait_presence(lambda p: str(p["from"]) == occupant)
        pres = self.make_presence(pto=occupant)
        pres.append(ET.Element(f"{{{MUC}}}x"))
        pres.send()
        reply = await asyncio.wait_for(future, STEP_TIMEOUT)
        if reply["type"] == "error":
            return ("error", reply["error"]["condition"])
        item = reply.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}item")
        affiliation = item.get("affiliation") if item is not None else None
        return ("joined", affiliation)

    async def leave(self, room, nick):
        occupant = f"{room}/{nick}"
        future = self.wait_presence(
            lambda p: str(p["from"]) == occupant and p["type"] == "unavailable"
        )
        self.make_presence(pto=occupant, ptype="unavailable").send()
        await asyncio.wait_for(future, STEP_TIMEOUT)

    async def room_features(self, room):
        """The room's disco#info features, or None when it does not exist."""
        try:
            info = await self.plugin["xep_0030"].get_info(jid=room, timeout=STEP_TIMEOUT)
        except IqError as e:
            if e.condition == "item-not-found":
                return None
            raise
        return set(info["disco_info"]["features"])

    async def waiting_list(self, room):
        """The module's waiting list: [(bare jid, nick)] in order, or the error."""
        iq = self.make_iq_get(queryxmlns=LOBBY, ito=room)
        try:
            reply = await iq.send(timeout=STEP_TIMEOUT)
        except IqError as e:
            return ("error", e.condition)
        query = reply.xml.find(f"{{{LOBBY}}}query")
        items = query.findall(f"{{{LOBBY}}}item") if query is not None else []
        positions = [int(i.get("position")) for i in items]
        if positions != list(range(1, len(items) + 1)):
            raise Failed(f"waiting list positions are not 1..n: {positions}")
        return ("ok", [(i.get("jid"), i.get("nick")) for i in items])


    async def open_room_behind_the_forms_back(self, room):
        """Asks the test-only plugin to switch members-only off directly."""
        iq = self.make_iq_set(ito=room)
        iq.append(ET.Element(f"{{{OPEN_ROOM}}}open"))
        reply = await iq.send(timeout=STEP_TIMEOUT)
        return reply.xml.find(f"{{{OPEN_ROOM}}}open").get("members-only")


async def start(client, port):
    client.connect("127.0.0.1", port)
    await asyncio.wait_for(client.started, STEP_TIMEOUT)
    return client


async def start_focus(args):
    """Jicofo's account, focus@auth.DOMAIN, logged in."""
    password = os.environ.get("BALCAO_FOCUS_PASSWORD")
    if not password:
        raise Failed("BALCAO_FOCUS_PASSWORD is not set")
    client = Client(f"focus@auth.{args.domain}", password, "focus", args.appliance)
    return await start(client, args.port)


async def scenario(args):
    domain = args.domain
    room = f"sala1@conference.{domain}"
    password = os.environ.get("BALCAO_STAFF_PASSWORD")
    if not password:
        raise Failed("BALCAO_STAFF_PASSWORD is not set")

    staff = Client(f"{args.staff}@{domain}", password, "staff", args.appliance)
    guest_a = Client(f"guest.{domain}", "", "guest A", args.appliance)
    guest_b = Client(f"guest.{domain}", "", "guest B", args.appliance)
    for client in (staff, guest_a, guest_b):
        await start(client, args.port)
    a, b = guest_a.boundjid.bare, guest_b.boundjid.bare
    check(a != b and a.endswith(f"@guest.{domain}"), f"two anonymous guests: {a}, {b}")

    # Before staff: the guest waits, the room is not created.
    outcome = await guest_a.attempt_join(room, "Ana")
    check(outcome == ("error", "registration-required"),
          f"guest A before staff is refused registration-required (got {outcome})")
    check(await staff.room_features(room) is None, "the room was not created by the guest")

    # Staff open the room and own it (on the appliance, through the focus
    # account, as jicofo does when staff start a meeting).
    focus = None
    if args.appliance:
        focus = await start_focus(args)
        outcome = await focus.attempt_join(room, "focus")
        check(outcome == ("joined", "owner"), f"focus creates sala1 for staff (got {outcome})")
        outcome = await guest_a.attempt_join(room, "Ana")
        check(outcome == ("error", "registration-required"),
              f"guest A knocks on the room focus made: refused (got {outcome})")
    outcome = await staff.attempt_join(room, "Atendente")
    check(outcome == ("joined", "owner"), f"staff joins sala1 as owner (got {outcome})")
    features = await staff.room_features(room)
    check(features is not None and "muc_membersonly" in features,
          "sala1 is members-only once open")

    # Two guests knock while staff is in the room: both wait.
    outcome = await guest_a.attempt_join(room, "Ana")
    check(outcome == ("error", "registration-required"),
          f"guest A knocks with staff present: refused (got {outcome})")
    outcome = await guest_b.attempt_join(room, "Bruno")
    check(outcome == ("error", "registration-required"),
          f"guest B knocks with staff present: refused (got {outcome})")

    listing = await staff.waiting_list(room)
    check(listing == ("ok", [(a, "Ana"), (b, "Bruno")]),
          f"waiting list is [A, B] in order of arrival (got {listing})")
    listing = await guest_b.waiting_list(room)
    check(listing == ("error", "forbidden"), f"a guest may not read the waiting list (got {listing})")

    # A membership for the whole guest host would open the room to everyone.
    try:
        await staff.plugin["xep_0045"].set_affiliation(room, "member", jid=f"guest.{domain}",
                                                timeout=STEP_TIMEOUT)
        host_wide = "accepted"
    except IqError as e:
        host_wide = e.condition
    check(host_wide == "not-allowed", f"membership for all of guest.{domain} is refused (got {host_wide})")

    # Staff admit A, and only A.
    await staff.plugin["xep_0045"].set_affiliation(room, "member", jid=a, timeout=STEP_TIMEOUT)
    outcome = await guest_a.attempt_join(room, "Ana")
    check(outcome == ("joined", "member"), f"admitted guest A enters (got {outcome})")
    outcome = await guest_b.attempt_join(room, "Bruno")
    check(outcome == ("error", "registration-required"),
          f"guest B is still refused (got {outcome})")
    listing = await staff.waiting_list(room)
    check(listing == ("ok", [(b, "Bruno")]), f"waiting list is now [B] (got {listing})")

    # Members-only cannot be switched off.
    form = await staff.plugin["xep_0045"].get_room_config(room, timeout=STEP_TIMEOUT)
    fields = form.get_fields()
    check("muc#roomconfig_membersonly" in fields, "the configuration form has the members-only field")
    answer = staff.plugin["xep_0004"].make_form(ftype="submit")
    answer.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/muc#roomconfig")
    answer.add_field(var="muc#roomconfig_membersonly", ftype="boolean", value=False)
    try:
        await staff.plugin["xep_0045"].set_room_config(room, answer, timeout=STEP_TIMEOUT)
        refused = "accepted"
    except IqError as e:
        refused = e.condition
    check(refused == "not-allowed", f"switching members-only off is refused (got {refused})")
    features = await staff.room_features(room)
    check("muc_membersonly" in features, "sala1 is still members-only")
    outcome = await guest_b.attempt_join(room, "Bruno")
    check(outcome == ("error", "registration-required"),
          f"guest B is still refused after the attempt (got {outcome})")

    # Another plugin switches members-only off directly: the next join
    # decision switches it back on before letting anyone in.
    if args.appliance:
        print("not here: a plugin switching members-only off (needs the test-only plugin; "
              "tests/lobby_xmpp.rs covers it)", flush=True)
    else:
        after = await staff.open_room_behind_the_forms_back(room)
        check(after == "false",
              "a plugin switched members-only off behind the forms' back (test module)")
        outcome = await guest_b.attempt_join(room, "Bruno")
        check(outcome == ("error", "registration-required"),
              f"guest B is still refused after that (got {outcome})")
        features = await staff.room_features(room)
        check("muc_membersonly" in features, "sala1 is members-only again")

    # A leaves: the membership goes with them.
    await guest_a.leave(room, "Ana")
    members = await staff.plugin["xep_0045"].get_affiliation_list(room, "member", timeout=STEP_TIMEOUT)
    members = [str(j) for j in members]
    check(a not in members, f"guest A's membership was removed on leaving (members: {members})")
    outcome = await guest_a.attempt_join(room, "Ana")
    check(outcome == ("error", "registration-required"),
          f"guest A cannot come back in without a new admission (got {outcome})")

    # Jicofo's account (focus@auth.DOMAIN, a component admin) creates rooms
    # before staff come and configures them: that keeps working, and the
    # room stays closed to guests all the same.
    if focus is None:
        focus = await start_focus(args)
    room2 = f"sala2@conference.{domain}"
    outcome = await focus.attempt_join(room2, "focus")
    check(outcome == ("joined", "owner"), f"focus creates sala2 before staff (got {outcome})")
    answer = focus.plugin["xep_0004"].make_form(ftype="submit")
    answer.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/muc#roomconfig")
    answer.add_field(var="muc#roomconfig_membersonly", ftype="boolean", value=False)
    try:
        await focus.plugin["xep_0045"].set_room_config(room2, answer, timeout=STEP_TIMEOUT)
        focus_form = "accepted"
    except IqError as e:
        focus_form = e.condition
    check(focus_form == "accepted", f"focus's configuration form is accepted (got {focus_form})")
    features = await staff.room_features(room2)
    check("muc_membersonly" in features, "sala2 stays members-only after focus's form")
    outcome = await guest_b.attempt_join(room2, "Bruno")
    check(outcome == ("error", "registration-required"),
          f"guest B is refused from sala2 (got {outcome})")
    outcome = await staff.attempt_join(room2, "Atendente")
    check(outcome == ("joined", "owner"), f"staff join focus's sala2 as owner (got {outcome})")
    listing = await staff.waiting_list(room2)
    check(listing == ("ok", [(b, "Bruno")]), f"sala2's waiting list is [B] (got {listing})")

    for client in (staff, guest_a, guest_b, focus):
        client.disconnect()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--staff", required=True, help="staff user name on DOMAIN")
    parser.add_argument("--appliance", action="store_true",
                        help="a booted appliance: STARTTLS, no test-only plugin")
    parser.add_argument("--debug", action="store_true", help="log the XMPP traffic")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(args), 120))
    except Failed as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
    except (asyncio.TimeoutError, IqTimeout):
        print("FAILED: no answer from prosody in time (a step waited more than "
              f"{STEP_TIMEOUT}s); see prosody's log", flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
