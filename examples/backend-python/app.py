"""A backend for Herald in Python (Flask): it logs users in and issues their
Herald tokens, answers every hook Herald asks it (connect, refresh,
subscribe, publish, rpc), and drives Herald through its HTTP API (publish,
send, disconnect).

    herald serve --config herald.toml      # Herald, on 127.0.0.1:8000
    python app.py                          # this backend, on 127.0.0.1:5000

docs/hooks.md and docs/api.md (in the Herald repository) are the contract
this file follows. Users, bans and rooms live in memory: a real backend
keeps them in its database.
"""

import functools
import hashlib
import hmac
import json
import os
import re
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import jwt
from flask import Flask, jsonify, request

HERE = Path(__file__).resolve().parent

# The secrets Herald and this backend share, read from Herald's own config.
CONFIG = tomllib.loads(Path(os.environ.get("BACKEND_HERALD_CONFIG", HERE / "herald.toml")).read_text())
AUTH_SECRET = CONFIG["auth_secret"]  # signs the tokens (HS256)
API_KEY = CONFIG["api_key"]  # the HTTP API's key
HOOK_SECRET = CONFIG["hooks"]["secret"].encode()  # signs Herald's hook requests
HERALD_URL = os.environ.get("BACKEND_HERALD_URL", "http://" + CONFIG["listen"])
TOKEN_TTL = int(os.environ.get("BACKEND_TOKEN_TTL", "3600"))  # seconds
PORT = int(os.environ.get("BACKEND_PORT", "5000"))

USERS = {
    "ada": {"password": "lovelace", "full_name": "Ada Lovelace", "admin": True, "teams": ["core"]},
    "bob": {"password": "builder", "full_name": "Bob Builder", "admin": False, "teams": []},
}
ROOMS = {"lobby", "random"}
BANNED = set()
CONNECTED = {}  # user -> ids of the sockets the connect hook let in
BAD_WORDS = re.compile(r"\b(darn|heck)\b", re.IGNORECASE)

app = Flask(__name__)


def issue_token(name):
    """A Herald token: `sub` names the user, `channels` are subscribed by
    the server as soon as the socket authenticates, `info` is what presence
    shows."""
    user = USERS[name]
    now = int(time.time())
    claims = {
        "sub": name,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "channels": [f"user:{name}"],
        "info": {"name": user["full_name"]},
    }
    return jwt.encode(claims, AUTH_SECRET, algorithm="HS256")


def herald(method, params):
    """Calls Herald's HTTP API: POST /api/METHOD with the key. Returns
    (status, reply body)."""
    req = urllib.request.Request(
        f"{HERALD_URL}/api/{method}",
        data=json.dumps(params).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def error(name, message):
    """A hook answer that refuses: the client receives it as a named error."""
    return jsonify({"error": {"name": name, "message": message}})


# --- The application's own routes ------------------------------------------


@app.get("/health")
def health():
    return jsonify({"ok": True})


@app.post("/login")
def login():
    body = request.get_json(silent=True) or {}
    name, password = body.get("name"), body.get("password")
    user = USERS.get(name) if isinstance(name, str) else None
    if user is None or not hmac.compare_digest(str(password), user["password"]):
        return jsonify({"error": "wrong name or password"}), 401
    if name in BANNED:
        return jsonify({"error": "banned"}), 403
    return jsonify({"token": issue_token(name)})


def admin_only(view):
    """The caller sends its Herald token as `Authorization: Bearer TOKEN`:
    the same token proves who it is to this backend."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        try:
            claims = jwt.decode(header.removeprefix("Bearer "), AUTH_SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return jsonify({"error": "log in first"}), 401
        if not USERS.get(claims.get("sub"), {}).get("admin"):
            return jsonify({"error": "admins only"}), 403
        return view(*args, **kwargs)

    return checked


@app.post("/announce")
@admin_only
def announce():
    """Publishes {"text", "user": "announcer"} on a channel (default
    chat:lobby) through the API: the clients' publish rules and hooks do not
    apply to the backend, so it can publish on user:NAME too."""
    body = request.get_json(silent=True) or {}
    channel = body.get("channel", "chat:lobby")
    status, reply = herald("publish", {"channel": channel, "data": {"text": body.get("text"), "user": "announcer"}})
    return jsonify(reply), status


@app.post("/notify")
@admin_only
def notify():
    """Sends the event `notice` to every socket of a user, wherever it is
    connected."""
    body = request.get_json(silent=True) or {}
    status, reply = herald("send", {"user": body.get("user"), "event": "notice", "data": {"text": body.get("text")}})
    return jsonify(reply), status


@app.post("/ban")
@admin_only
def ban():
    """Bans a user: their sockets are disconnected now, and the connect hook
    refuses them from then on (their token is still valid: that is the
    point of asking the backend on every connect)."""
    name = (request.get_json(silent=True) or {}).get("user")
    BANNED.add(name)
    status, reply = herald("disconnect", {"user": name, "reason": "banned"})
    return jsonify(reply), status


@app.get("/connected")
def connected():
    """The sockets the connect hook let in, by user."""
    return jsonify(CONNECTED)


# --- The hooks Herald calls ------------------------------------------------


def signed(view):
    """Answers only requests Herald signed (docs/hooks.md, "Trusting a
    request"): HMAC-SHA256 of TIMESTAMP.BODY, checked over the raw bytes,
    compared in constant time, at most five minutes old."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        ts = request.headers.get("X-Herald-Timestamp", "")
        sent = request.headers.get("X-Herald-Signature", "")
        body = request.get_data(cache=True)
        mac = hmac.new(HOOK_SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
        if not (fresh and hmac.compare_digest(sent, "sha256=" + mac)):
            return jsonify({"error": "bad signature"}), 401
        hook = request.get_json(silent=True)
        if not isinstance(hook, dict):
            return jsonify({"error": "not a JSON object"}), 400
        return view(hook, *args, **kwargs)

    return checked


@app.post("/herald/connect")
@signed
def on_connect(hook):
    user = hook["socket"]["user"]  # from the handshake token, when it verified
    if user in BANNED:
        return error("BannedError", f"{user} is banned")
    if user is not None:
        CONNECTED.setdefault(user, []).append(hook["socket"]["id"])
    return jsonify({})  # allowed; the socket keeps its token


@app.post("/herald/refresh")
@signed
def on_refresh(hook):
    user = hook["socket"]["user"]
    if user not in USERS or user in BANNED:
        return error("BannedError", "no new token")  # the token then expires
    return jsonify({"token": issue_token(user)})


@app.post("/herald/subscribe")
@signed
def on_subscribe(hook):
    user, channel = hook["socket"]["user"], hook["channel"]
    namespace, _, name = channel.partition(":")
    if namespace == "user" and name != user:
        return error("ForbiddenChannelError", f"{channel} is {name}'s personal channel")
    if namespace == "team" and name not in USERS.get(user, {}).get("teams", []):
        return error("NotAMemberError", f"{user} is not in team {name}")
    if namespace == "chat" and name not in ROOMS:
        return error("NoSuchRoomError", f"there is no room {name}")
    return jsonify({})


@app.post("/herald/publish")
@signed
def on_publish(hook):
    data = hook["data"]
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not 0 < len(text) <= 500:
        return error("InvalidMessageError", "a message is {text} of 1 to 500 characters")
    # What every subscriber receives instead of what the client sent.
    return jsonify({"data": {"text": BAD_WORDS.sub("****", text), "user": hook["socket"]["user"], "at": int(time.time())}})


@app.post("/herald/rpc")
@signed
def on_rpc(hook):
    user, procedure = hook["socket"]["user"], hook["procedure"]
    if procedure == "greet":
        who = USERS[user]["full_name"] if user in USERS else "stranger"
        return jsonify({"data": {"text": f"Hello, {who}!"}})
    if procedure == "rooms":
        return jsonify({"data": sorted(ROOMS)})
    return error("NoSuchProcedureError", f"no procedure {procedure}")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT, threaded=True)
