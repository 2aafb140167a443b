-- Test only (tests/lobby_xmpp.rs): stands for another plugin that switches a
-- room's members-only setting off behind the configuration form's back, the
-- way a "wait for host" plugin opens a room when its host arrives.
--   <iq type='set' to='ROOM'><open xmlns='urn:balcao:test:open-room'/></iq>
-- answers with <open members-only='true|false'/> as the room is afterwards.

local st = require "util.stanza";
local jid_bare = require "util.jid".bare;

local muc = module:depends("muc");
local XMLNS = "urn:balcao:test:open-room";

module:hook("iq-set/bare/" .. XMLNS .. ":open", function(event)
	local origin, stanza = event.origin, event.stanza;
	local room = muc.get_room_from_jid(jid_bare(stanza.attr.to));
	if not room then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found"));
		return true;
	end
	room:set_members_only(false);
	origin.send(st.reply(stanza):tag("open", {
		xmlns = XMLNS;
		["members-only"] = tostring(room:get_members_only() and true or false);
	}));
	return true;
end);

-- Stands for Jitsi's muc_lobby_rooms too: it attaches a lobby room when the
-- global "create-lobby-room" event names a room. Here that is only logged,
-- for tests/lobby_xmpp.rs to find.
module:hook_global("create-lobby-room", function(event)
	module:log("info", "test: a lobby room was requested for %s (members-only: %s)",
		event.room.jid, tostring(event.room:get_members_only()));
end);
