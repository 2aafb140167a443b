-- mod_balcao_private_rooms: the Balcão Virtual counter is private.
--
-- Loaded on the conference MUC component (next to prosody's own "muc"), it
-- keeps every room closed to citizens until a staff member lets one in:
--
--   * every room is members-only from the moment it exists, and stays so: a
--     room configuration form that would switch members-only off is refused,
--     and the setting is put back before any join is decided;
--   * only staff (accounts of the main host, balcao_staff_host) and system
--     accounts (Jitsi's focus on auth.DOMAIN, component admins) may create a
--     room; staff become owners when they join (Jitsi's own configuration,
--     restrict_room_creation = true, narrows creation further to the focus
--     account: jicofo creates the room when a staff member starts a meeting);
--   * anyone else (a guest) who knocks on a room they are not a member of is
--     refused with <registration-required/>, also when the room does not
--     exist yet; the first knock of each guest is remembered, in memory, per
--     room, and room owners and staff can read the waiting list in order of
--     arrival with <iq type='get' to='ROOM'><query xmlns='urn:balcao:lobby'/></iq>;
--   * a moderator admits one guest by granting that guest's bare JID the
--     `member` affiliation (XEP-0045); when the guest leaves the room the
--     membership is taken back, so the room is closed again.
--
-- Options (on the conference component, all optional):
--   balcao_staff_host      host whose accounts are staff
--                          (default: the component's host without its first
--                          label, conference.DOMAIN -> DOMAIN)
--   balcao_system_hosts    hosts whose accounts are services, never guests
--                          (default: { "auth." .. balcao_staff_host })
--   balcao_lobby_knock_ttl seconds a knock stays on the waiting list
--                          (default: 28800, a working day)
--   balcao_attach_jitsi_lobby  ask Jitsi's muc_lobby_rooms, through its global
--                          "create-lobby-room" event, to give each new room
--                          its lobby room, so Jitsi's clients have somewhere
--                          to wait (default: true; harmless without Jitsi)
--
-- Built on prosody 0.12's MUC events only; the event names and their
-- arguments are those of prosody's modules/muc/muc.lib.lua and mod_muc.lua.

local st = require "util.stanza";
local jid_util = require "util.jid";
local datetime = require "util.datetime";
local usermanager = require "core.usermanager";

local jid_bare, jid_split = jid_util.bare, jid_util.split;

local LOBBY_XMLNS = "urn:balcao:lobby";
local MUC_OWNER_XMLNS = "http://jabber.org/protocol/muc#owner";
local MEMBERS_ONLY_FIELD = "muc#roomconfig_membersonly";

local default_staff_host = module.host:gsub("^[^%.]+%.", "");
local staff_host = module:get_option_string("balcao_staff_host", default_staff_host);
local system_hosts = module:get_option_set("balcao_system_hosts", { "auth." .. staff_host });
local knock_ttl = module:get_option_number("balcao_lobby_knock_ttl", 8 * 3600);
local attach_jitsi_lobby = module:get_option_boolean("balcao_attach_jitsi_lobby", true);

-- The component's own mod_muc (this module is useless anywhere else).
local muc = module:depends("muc");

-- A main host that lets anyone in anonymously has no staff to speak of:
-- treating its users as staff would let any visitor open and run a room.
local staff_auth = module:context(staff_host):get_option_string("authentication", "internal_hashed");
local staff_is_authenticated = staff_auth ~= "anonymous" and staff_auth ~= "jitsi-anonymous";
if not staff_is_authenticated then
	module:log("error", "balcao_staff_host %s uses %q authentication: nobody is treated as staff, "
		.. "so no room can be opened; set authentication = \"internal_hashed\" on that host", staff_host, staff_auth);
end

module:log("info", "private rooms: staff on %s, system accounts on %s", staff_host, tostring(system_hosts));

-- "system", "staff" or "guest" for a full or bare JID.
local function kind_of(jid)
	local node, host = jid_split(jid);
	if usermanager.is_admin(jid, module.host) or (host and system_hosts:contains(host)) then
		return "system";
	end
	if node and host == staff_host and staff_is_authenticated then
		return "staff";
	end
	return "guest";
end

local function is_member_or_above(room, jid)
	local affiliation = room:get_affiliation(jid);
	return affiliation == "member" or affiliation == "admin" or affiliation == "owner";
end

local function refuse(origin, stanza, room_jid, text)
	origin.send(st.error_reply(stanza, "auth", "registration-required", text, room_jid));
	return true;
end

---------------------------------------------------------------------------
-- The waiting list: room JID -> { [guest bare JID] = knock }, in memory.
-- A knock is { jid, full, nick, since, seq }; seq breaks ties inside a second.

local waiting = {};
local next_seq = 0;

local function knock(room_jid, full_jid, nick)
	local bare = jid_bare(full_jid);
	local list = waiting[room_jid];
	if not list then
		list = {};
		waiting[room_jid] = list;
	end
	local entry = list[bare];
	if entry then
		-- Keep the first arrival time; follow the guest's current session.
		entry.full, entry.nick = full_jid, nick or entry.nick;
		return entry;
	end
	next_seq = next_seq + 1;
	entry = { jid = bare, full = full_jid, nick = nick, since = os.time(), seq = next_seq };
	list[bare] = entry;
	module:log("info", "%s knocked on %s", bare, room_jid);
	return entry;
end

local function forget_knock(room_jid, bare)
	local list = waiting[room_jid];
	if not list then return; end
	list[bare] = nil;
	if next(list) == nil then
		waiting[room_jid] = nil;
	end
end

-- A knock is stale when it is older than the TTL, or when the guest's
-- session on one of this server's hosts has ended (an anonymous guest who
-- closes the browser never comes back under the same JID).
local function is_stale(entry, now)
	if now - entry.since > knock_ttl then
		return true;
	end
	local _, host = jid_split(entry.full);
	if host and prosody.hosts[host] and prosody.hosts[host].type == "local" then
		return prosody.full_sessions[entry.full] == nil;
	end
	return false;
end

-- The room's waiting list, oldest knock first.
local function waiting_list(room_jid)
	local list = waiting[room_jid];
	local ordered = {};
	if not list then return ordered; end
	local now = os.time();
	for bare, entry in pairs(list) do
		if is_stale(entry, now) then
			list[bare] = nil;
		else
			table.insert(ordered, entry);
		end
	end
	if next(list) == nil then
		waiting[room_jid] = nil;
	end
	table.sort(ordered, function(a, b) return a.seq < b.seq; end);
	return ordered;
end

---------------------------------------------------------------------------
-- Members-only, always.

local function keep_members_only(room, why)
	if not room:get_members_only() then
		module:log("warn", "%s was not members-only (%s): switching it back on", room.jid, why);
		room:set_members_only(true);
	end
end

-- After mod_muc applies its defaults (priority 1) and before the creator
-- joins; also for rooms made through mod_muc's create_room().
module:hook("muc-room-pre-create", function(event)
	event.room:set_members_only(true);
end, 0.5);

module:hook("muc-room-created", function(event)
	keep_members_only(event.room, "room created");
	if attach_jitsi_lobby then
		-- Jitsi's muc_lobby_rooms listens for this global event (its
		-- persistent_lobby module fires it) and gives the room a lobby room
		-- on lobby.DOMAIN, which is where Jitsi's clients wait. Without that
		-- plugin nobody listens and nothing happens.
		prosody.events.fire_event("create-lobby-room", { room = event.room });
		module:log("debug", "asked for a Jitsi lobby room for %s", event.room.jid);
	end
end, 100);

module:hook("muc-room-restored", function(event)
	keep_members_only(event.room, "room restored from storage");
end, 100);

-- A configuration form that switches members-only off is refused as a
-- whole, before mod_muc (priority -2) applies any of it. Forms from system
-- accounts (jicofo configures the rooms it creates) are not refused: only
-- their members-only "false" is ignored, by the handler below.
module:hook("iq-set/bare/" .. MUC_OWNER_XMLNS .. ":query", function(event)
	local origin, stanza = event.origin, event.stanza;
	local form = stanza.tags[1]:get_child("x", "jabber:x:data");
	if not form or form.attr.type ~= "submit" then return; end
	if kind_of(stanza.attr.from) == "system" then return; end
	for field in form:childtags("field") do
		if field.attr.var == MEMBERS_ONLY_FIELD then
			local value = field:get_child_text("value");
			if value == "0" or value == "false" then
				module:log("info", "%s tried to open %s to non-members: refused", stanza.attr.from, stanza.attr.to);
				origin.send(st.error_reply(stanza, "cancel", "not-allowed",
					"Rooms on this service are always members-only: guests wait until a moderator admits them",
					jid_bare(stanza.attr.to)));
				return true;
			end
		end
	end
end, 10);

-- Second line: should a form reach mod_muc anyway, its members-only handler
-- (priority 0) does not run for a "false".
module:hook("muc-config-submitted/" .. MEMBERS_ONLY_FIELD, function(event)
	if not event.value then
		module:log("warn", "ignored a configuration change switching %s to open", event.room.jid);
		return true;
	end
end, 10);

---------------------------------------------------------------------------
-- Who may create a room.

module:hook("muc-room-pre-create", function(event)
	local origin, stanza, room = event.origin, event.stanza, event.room;
	local from = stanza.attr.from;
	if kind_of(from) ~= "guest" then return; end
	local nick = select(3, jid_split(stanza.attr.to));
	knock(room.jid, from, nick);
	return refuse(origin, stanza, room.jid, "Please wait: a staff member will let you in");
end, 10);

---------------------------------------------------------------------------
-- Joining an existing room.

-- Before prosody's own checks (banned at -10, members-only at -5): keep the
-- room members-only, make staff owners, record guests' knocks.
module:hook("muc-occupant-pre-join", function(event)
	local room, stanza = event.room, event.stanza;
	local from = stanza.attr.from;
	keep_members_only(room, "join attempt");

	local kind = kind_of(from);
	if kind == "staff" then
		if room:get_affiliation(from) ~= "owner" then
			room:set_affiliation(true, jid_bare(from), "owner", "staff member");
		end
	elseif kind == "system" then
		if not is_member_or_above(room, from) then
			room:set_affiliation(true, jid_bare(from), "member", "system account");
		end
	elseif not is_member_or_above(room, from) and room:get_affiliation(from) ~= "outcast" then
		knock(room.jid, from, select(3, jid_split(event.occupant.nick)));
	end
end, 20);

-- Last line: a guest without membership never gets past this, whatever
-- another module decided before.
module:hook("muc-occupant-pre-join", function(event)
	local room, stanza = event.room, event.stanza;
	if kind_of(stanza.attr.from) == "guest" and not is_member_or_above(room, stanza.attr.from) then
		module:log("warn", "%s reached the last check of %s without membership: refused", stanza.attr.from, room.jid);
		return refuse(event.origin, stanza, room.jid, "Please wait: a staff member will let you in");
	end
end, -50);

-- An admitted guest is in: off the waiting list.
module:hook("muc-occupant-joined", function(event)
	local occupant = event.occupant;
	if kind_of(occupant.bare_jid) == "guest" then
		forget_knock(event.room.jid, occupant.bare_jid);
		module:log("info", "%s was admitted to %s", occupant.bare_jid, event.room.jid);
	end
end);

-- A guest who leaves gives the membership back: the next citizen finds the
-- room closed, and the same guest must knock again. Before mod_muc's own
-- handler (priority 0), which may destroy the emptied room.
module:hook("muc-occupant-left", function(event)
	local room, occupant = event.room, event.occupant;
	local bare = occupant and occupant.bare_jid;
	if not bare or kind_of(bare) ~= "guest" then return; end
	if room:get_affiliation(bare) == "member" then
		room:set_affiliation(true, bare, "none", "left the room");
		module:log("info", "%s left %s: membership removed", bare, room.jid);
	end
end, 10);

---------------------------------------------------------------------------
-- Affiliations moderators may hand out.

module:hook("muc-pre-set-affiliation", function(event)
	if event.actor == nil then return; end -- this server's own decision
	local affiliation = event.affiliation;
	if affiliation == "none" or affiliation == "outcast" then return; end
	local node = jid_split(event.jid);
	if not node then
		-- Membership for a whole host would admit every guest at once.
		event.allowed = false;
		event.error = { type = "cancel", condition = "not-allowed" };
		return;
	end
	if (affiliation == "owner" or affiliation == "admin") and kind_of(event.jid) == "guest" then
		-- Only staff run the counter: a guest never admits another.
		event.allowed = false;
		event.error = { type = "cancel", condition = "not-allowed" };
	end
end, 10);

---------------------------------------------------------------------------
-- The waiting list query.

local function may_read_waiting_list(room, from)
	local kind = kind_of(from);
	if kind == "system" or kind == "staff" then return true; end
	if not room then return false; end
	local affiliation = room:get_affiliation(from);
	return affiliation == "owner" or affiliation == "admin";
end

module:hook("iq-get/bare/" .. LOBBY_XMLNS .. ":query", function(event)
	local origin, stanza = event.origin, event.stanza;
	local room_jid = jid_bare(stanza.attr.to);
	local room = muc.get_room_from_jid(room_jid);
	if not may_read_waiting_list(room, stanza.attr.from) then
		origin.send(st.error_reply(stanza, "auth", "forbidden",
			"Only the room's moderators may read its waiting list", room_jid));
		return true;
	end
	local reply = st.reply(stanza):tag("query", { xmlns = LOBBY_XMLNS, room = room_jid });
	for position, entry in ipairs(waiting_list(room_jid)) do
		reply:tag("item", {
			jid = entry.jid;
			nick = entry.nick;
			since = datetime.datetime(entry.since);
			position = tostring(position);
		}):up();
	end
	origin.send(reply);
	return true;
end);

module:hook("muc-disco#info", function(event)
	event.reply:tag("feature", { var = LOBBY_XMLNS }):up();
end);
